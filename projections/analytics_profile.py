"""What analytics.users keeps of a user's SCIM profile: its identifiers, primary e-mail, department and
manager, read defensively from attributes as stored (any shape a client managed to send)."""

from __future__ import annotations

from typing import Any

from scim.core_schemas import ENTERPRISE_USER


def primary_email(emails: Any) -> str | None:
    if not isinstance(emails, list) or not emails:
        return None
    primary = next((email for email in emails if isinstance(email, dict) and email.get("primary")), emails[0])
    value = primary.get("value") if isinstance(primary, dict) else None
    return value if isinstance(value, str) else None


def profile_columns(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_name": attributes.get("userName"),
        "external_id": attributes.get("externalId"),
        "display_name": attributes.get("displayName"),
        "email": primary_email(attributes.get("emails")),
        **enterprise_columns(attributes.get(ENTERPRISE_USER)),
    }


def enterprise_columns(extension: Any) -> dict[str, Any]:
    """The department and the manager's id, from the Enterprise User extension's object (None if absent)."""
    extension = extension if isinstance(extension, dict) else {}
    manager = extension.get("manager")
    return {
        "department": extension.get("department"),
        "manager_id": manager.get("value") if isinstance(manager, dict) else None,
    }
