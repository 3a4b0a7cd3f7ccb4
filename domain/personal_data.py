"""What identifies a person in a user's profile: the one list that both the encryption of personal data
(eventstore/personal_data.py, which stores these values encrypted with the person's own key) and the erasure
(what its reason must not quote, what it looks for in tables outside the log) go by."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The profile attributes that identify a person (names lower-cased). The enterprise extension's personal
# attributes are listed apart; an organization's own extensions mark theirs (`personal` in the declaration).
# The rest (title, userType, locale, roles...) describes a job, not a person.
PERSONAL_ATTRIBUTES = frozenset(
    {
        "username", "name", "displayname", "nickname", "emails", "phonenumbers", "addresses", "externalid",
        "photos", "ims", "x509certificates", "profileurl",
    }
)  # fmt: skip
PERSONAL_ENTERPRISE_ATTRIBUTES = frozenset({"employeenumber", "manager"})

# Where a complex value keeps its identifying strings (names, e-mails, numbers, addresses, a manager's name).
_IDENTIFYING_PARTS = (
    "value", "formatted", "givenName", "familyName", "middleName", "displayName", "streetAddress", "locality",
    "postalCode",
)  # fmt: skip
# Shorter strings ("Al", "QA") are words of any reason and any row: searching for them finds everything.
_SHORTEST = 3


def personal_values(attributes: Mapping[str, Any]) -> list[str]:
    """The strings among a profile's personal attributes (and its extensions' personal ones) that identify the
    person, longest first, so that a search for them matches a whole value before a part of it."""
    values: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, str) and len(value.strip()) >= _SHORTEST:
            values.add(value.strip())
        elif isinstance(value, dict):
            for key in _IDENTIFYING_PARTS:
                collect(value.get(key))
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for name, value in attributes.items():
        if name.lower() in PERSONAL_ATTRIBUTES:
            collect(value)
        elif name.lower().startswith("urn:") and isinstance(value, dict):
            for sub_name, sub_value in value.items():
                if sub_name.lower() in PERSONAL_ENTERPRISE_ATTRIBUTES:
                    collect(sub_value)
    return sorted(values, key=lambda value: (-len(value), value))


def quotes(text: str, value: str) -> bool:
    """Whether `text` holds `value` as whole words (ignoring case): not inside a longer word."""
    pattern = rf"(?<!\w){re.escape(value.casefold())}(?!\w)"
    return re.search(pattern, text.casefold()) is not None
