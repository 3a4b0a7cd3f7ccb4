"""/openapi.json describes exactly the routes the app serves, as a valid OpenAPI 3.1 document."""

import schemathesis

from app.http.openapi import document
from tests.conftest import bearer_routes

METHODS = {"get", "post", "put", "patch", "delete"}


def test_the_description_has_exactly_the_apps_operations() -> None:
    described = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }
    assert described == bearer_routes()


def test_the_description_is_valid_openapi_and_every_reference_resolves() -> None:
    loaded = schemathesis.openapi.from_dict(document())
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) == len(bearer_routes())
