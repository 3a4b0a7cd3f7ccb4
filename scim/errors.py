"""Protocol errors. Each maps one-to-one onto an RFC 7644 §3.12 error response at the HTTP edge."""

from __future__ import annotations

from typing import Literal

# RFC 7644 §3.12's scimType values (table 9): a client branches on them, so no other spelling is sent.
ScimType = Literal[
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
]


class ScimError(Exception):
    """A request the SCIM protocol rejects. `detail` is shown to the Okta admin, so it is written for one."""

    def __init__(
        self,
        status: int,
        detail: str,
        scim_type: ScimType | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = headers or {}


def invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def no_target(detail: str) -> ScimError:
    return ScimError(400, detail, "noTarget")


def mutability(detail: str) -> ScimError:
    return ScimError(400, detail, "mutability")


def too_many(detail: str) -> ScimError:
    return ScimError(400, detail, "tooMany")
