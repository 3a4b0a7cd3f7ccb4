# ruff: noqa: RUF001, RUF003 -- confusable letters are what these compare
"""The one folding behind "ignoring case": NFKC, Unicode full case folding, NFKC (scim/folding.py)."""

from pathlib import Path
from typing import Any

import msgspec
import pytest

from scim.core_schemas import USER
from scim.folding import fold, sql_function
from scim.patch import apply_patch
from scim.patch_request import PatchRequest, parse_operations

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0010_case_folding.sql"

# Pairs that compare equal ignoring case, whatever the database's collation.
EQUAL = [
    ("İlker", "i̇lker"),  # Turkish dotted capital I folds to i + combining dot above (U+0307)
    ("İLKER", "i̇lker"),
    ("ILKER", "ilker"),
    ("ΣΟΦΙΑΣ", "σοφιας"),  # final sigma: Σ, σ and ς fold alike
    ("ΣΟΦΙΑΣ", "σοφιασ"),
    ("Straße", "STRASSE"),  # ß folds to ss
    ("Straße", "STRAẞE"),  # capital sharp s
    ("ＡＢＣ", "abc"),  # full-width letters: NFKC
    ("ﬁle", "FILE"),  # a ligature: NFKC
    ("Å", "å"),  # composed and decomposed compare alike
]
# Pairs that do not: dotless ı is a letter of its own, and the dotted İ is not a plain I.
DIFFERENT = [("ılker", "ilker"), ("ılker", "ILKER"), ("İlker", "ilker"), ("İlker", "Ilker")]


@pytest.mark.parametrize(("left", "right"), EQUAL)
def test_names_equal_ignoring_case_fold_to_the_same_key(left: str, right: str) -> None:
    assert fold(left) == fold(right)


@pytest.mark.parametrize(("left", "right"), DIFFERENT)
def test_different_letters_stay_different(left: str, right: str) -> None:
    assert fold(left) != fold(right)


def test_folding_ascii_takes_the_shortcut_to_the_same_result() -> None:
    text = "".join(chr(code_point) for code_point in range(1, 128))
    assert fold(text) == text.lower()
    assert fold(text + "é")[:-1] == text.lower()


def test_folding_is_idempotent() -> None:
    for left, right in EQUAL + DIFFERENT:
        assert fold(fold(left)) == fold(left)
        assert fold(fold(right)) == fold(right)


def test_migration_0010_holds_the_sql_functions_this_python_generates() -> None:
    # When Python's Unicode version moves, regenerate the functions in a new migration.
    assert sql_function() in MIGRATION.read_text()
    assert MIGRATION.read_text().isascii()


def patched_emails(path: str, emails: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": path, "value": "home"}],
    }
    current = {"userName": "x", "emails": emails}
    patched = apply_patch(USER, current, parse_operations(msgspec.convert(body, PatchRequest)), {})
    return patched["emails"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("stored", "sent"), EQUAL)
def test_a_patch_value_filter_matches_as_the_database_does(stored: str, sent: str) -> None:
    emails = [{"value": f"{stored}@example.com", "type": "work"}, {"value": "other@example.com"}]
    assert patched_emails(f'emails[value eq "{sent}@example.com"].type', emails)[0]["type"] == "home"
    prefix = patched_emails(f'emails[value sw "{sent}@"].type', emails)
    assert [email.get("type") for email in prefix] == ["home", None]
