"""scim2-server (from PyPI), a peer SCIM server, as an ASGI app under the same uvicorn as scimledger.

It keeps its resources in memory: no database, no log. It is a reference for the protocol work per request.

    uvicorn --factory bench.load.peer_app:create_app
"""

from __future__ import annotations

import secrets

from scim2_models import ScimProvider
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.service import ScimService
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)


def create_app() -> ASGIApplication:
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=load_default_service_provider_config(),
    )
    service = ScimService(provider, secret=secrets.token_urlsafe(32))
    return ASGIApplication(AsyncInMemoryStorage(), provider, service)
