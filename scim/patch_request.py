"""A PATCH request (RFC 7644 §3.5.2) as it arrives: its body decoded, and its operations checked and their
paths parsed, before any is applied (scim/patch.py)."""

from __future__ import annotations

from typing import Any

import msgspec

from scim.errors import invalid_value, no_target
from scim.filter import parse_patch_path
from scim.filter_tree import PatchPath

OPERATIONS = ("add", "remove", "replace")


class PatchOperationBody(msgspec.Struct, forbid_unknown_fields=False):
    op: str
    path: str | msgspec.UnsetType | None = msgspec.UNSET
    value: Any = msgspec.UNSET


class PatchRequest(msgspec.Struct, rename={"operations": "Operations"}):
    operations: list[PatchOperationBody]
    schemas: list[str] = []


class PatchOperation(msgspec.Struct, frozen=True):
    op: str
    path: PatchPath | None
    value: Any

    @classmethod
    def from_body(cls, body: PatchOperationBody) -> PatchOperation:
        op = body.op.lower()
        if op not in OPERATIONS:
            raise invalid_value(f"'{body.op}' is not a PATCH operation: use add, remove or replace.")
        path = parse_patch_path(body.path) if isinstance(body.path, str) and body.path.strip() else None
        if op == "remove" and path is None:
            raise no_target("A remove operation needs a path naming what to remove.")
        if op != "remove" and body.value is msgspec.UNSET:
            raise invalid_value(f"The {op} operation needs a value.")
        return cls(op, path, body.value)


def parse_operations(request: PatchRequest) -> list[PatchOperation]:
    if not request.operations:
        raise invalid_value("The PATCH request has no Operations.")
    return [PatchOperation.from_body(body) for body in request.operations]
