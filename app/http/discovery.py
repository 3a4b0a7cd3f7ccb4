"""RFC 7644 §4 discovery: what this service implements, and nothing it does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.auth import authenticate, user_type
from app.http.endpoint import services_of
from app.http.responses import ScimResponse, base_url, list_response
from domain.errors import NotFound
from scim.core_schemas import ENTERPRISE_USER_SCHEMA, GROUP, GROUP_SCHEMA, USER, USER_SCHEMA
from scim.resource_type import ResourceType

RESOURCE_TYPES = (USER, GROUP)
SCHEMAS = (USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA)


async def _user_type(request: Request) -> ResourceType:
    """/Schemas and /ResourceTypes are public and then describe the standard schemas alone; with any token of
    an organization (its SCIM client's, an auditor's) they describe its own extensions too. A bad token is
    refused as anywhere."""
    if "authorization" not in request.headers:
        return USER
    return await user_type(request, await authenticate(request, scope=None))


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


def _resource_types(base: str, user_type: ResourceType) -> dict[str, dict[str, Any]]:
    return {kind.name: kind.to_scim(f"{base}/ResourceTypes/{kind.name}") for kind in (user_type, GROUP)}


def _schemas(base: str, user_type: ResourceType) -> dict[str, dict[str, Any]]:
    custom = user_type.extensions[len(USER.extensions) :]
    return {schema.id: schema.to_scim(f"{base}/Schemas/{schema.id}") for schema in (*SCHEMAS, *custom)}


def _read_only_collection(
    path: str, documents: Callable[[str, ResourceType], dict[str, dict[str, Any]]], what: str
) -> list[Route]:
    """GET `path` lists the documents; GET `path/{key}` returns one."""

    async def listing(request: Request) -> Response:
        listed = list(documents(base_url(request), await _user_type(request)).values())
        return list_response(len(listed), 1, listed)

    async def item(request: Request) -> Response:
        key = request.path_params["key"]
        document = documents(base_url(request), await _user_type(request)).get(key)
        if document is None:
            raise NotFound(f"No {what} '{key}'.")
        return ScimResponse(document)

    return [Route(path, listing, methods=["GET"]), Route(f"{path}/{{key}}", item, methods=["GET"])]


ROUTES = [
    Route("/ServiceProviderConfig", service_provider_config, methods=["GET"]),
    *_read_only_collection("/ResourceTypes", _resource_types, "resource type"),
    *_read_only_collection("/Schemas", _schemas, "schema"),
]
