"""An org's schema aggregate, without a database: which redeclarations it records and which it refuses."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from app.services.org_schemas import parse
from domain.errors import IncompatibleRedeclaration
from domain.org_schemas import OrgSchema
from scim.declaration import to_document

ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def declaration(*attributes: dict[str, Any], urn: str = ACME) -> dict[str, Any]:
    return to_document(parse(json.dumps({"id": urn, "attributes": list(attributes)}).encode()))


def replayed(schema: OrgSchema) -> OrgSchema:
    """The aggregate as a later process loads it: rebuilt from its events alone."""
    events = schema.collect_events()
    rebuilt = None
    for recorded in events:
        rebuilt = recorded.mutate(rebuilt)
    assert isinstance(rebuilt, OrgSchema)
    return rebuilt


def test_the_shape_of_an_attribute_dropped_earlier_is_kept_by_the_events_and_checked() -> None:
    schema = OrgSchema(org_id="org", urn=ACME, declaration=declaration({"name": "badge", "type": "integer"}))
    schema.declare(declaration({"name": "region"}))
    loaded = replayed(schema)
    with pytest.raises(IncompatibleRedeclaration, match=r"'Badge' .* was declared as a single integer"):
        loaded.declare(declaration({"name": "region"}, {"name": "Badge", "type": "string"}))
    loaded.declare(declaration({"name": "region"}, {"name": "badge", "type": "integer"}))
    assert loaded.version == 3


def test_the_same_declaration_again_records_nothing_and_another_spelling_of_the_urn_is_refused() -> None:
    schema = OrgSchema(org_id="org", urn=ACME, declaration=declaration({"name": "badge"}))
    schema.declare(declaration({"name": "badge"}))
    assert schema.version == 1
    with pytest.raises(IncompatibleRedeclaration, match=re.escape(f"already declared as '{ACME}'")):
        schema.declare(declaration({"name": "badge"}, urn=ACME.upper()))
    assert schema.version == 1
