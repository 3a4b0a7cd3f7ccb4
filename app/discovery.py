"""RFC 7644 §4 discovery: what this service implements, and nothing it does not."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http import LIST_SCHEMA, ScimResponse, base_url, services_of
from domain.errors import NotFound
from scim.schema import ENTERPRISE_USER_SCHEMA, USER, USER_SCHEMA

RESOURCE_TYPES = (USER,)
SCHEMAS = (USER_SCHEMA, ENTERPRISE_USER_SCHEMA)


def _list(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


async def service_provider_config(request: Request) -> Response:
    settings = services_of(request).settings
    base = base_url(request)
    return ScimResponse(
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/scimledger/scimledger#readme",
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": settings.max_page_size},
            "changePassword": {"supported": False},
            "sort": {"supported": True},
            "etag": {"supported": True},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "Bearer token",
                    "description": "A per-organization token issued with 'scimledger token issue --org ORG'.",
                    "primary": True,
                }
            ],
            "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
        }
    )


async def resource_types(request: Request) -> Response:
    base = base_url(request)
    return ScimResponse(_list([kind.to_scim(f"{base}/ResourceTypes/{kind.name}") for kind in RESOURCE_TYPES]))


async def resource_type(request: Request) -> Response:
    base = base_url(request)
    for kind in RESOURCE_TYPES:
        if kind.name == request.path_params["name"]:
            return ScimResponse(kind.to_scim(f"{base}/ResourceTypes/{kind.name}"))
    raise NotFound(f"No resource type '{request.path_params['name']}'.")


async def schemas(request: Request) -> Response:
    base = base_url(request)
    return ScimResponse(_list([schema.to_scim(f"{base}/Schemas/{schema.id}") for schema in SCHEMAS]))


async def schema(request: Request) -> Response:
    base = base_url(request)
    for candidate in SCHEMAS:
        if candidate.id == request.path_params["id"]:
            return ScimResponse(candidate.to_scim(f"{base}/Schemas/{candidate.id}"))
    raise NotFound(f"No schema '{request.path_params['id']}'.")


ROUTES = [
    Route("/ServiceProviderConfig", service_provider_config, methods=["GET"]),
    Route("/ResourceTypes", resource_types, methods=["GET"]),
    Route("/ResourceTypes/{name}", resource_type, methods=["GET"]),
    Route("/Schemas", schemas, methods=["GET"]),
    Route("/Schemas/{id}", schema, methods=["GET"]),
]
