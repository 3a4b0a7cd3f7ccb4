"""Large bodies are worked on off the event loop, so that one request never holds every other one.

Which thread did the work is recorded, not how long it took: the loop runs on the main thread here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import app.http.reading
import app.http.user_routes
import app.services.groups
import app.services.org_schemas
import app.services.users
import eventstore.store
from domain.users import User
from tests.e2e.test_groups_api import Catalog, add, catalog, find_group, new_user, patch  # noqa: F401
from tests.e2e.test_users_api import PATCH_OP, create

LARGE = 1024  # bytes: the tests' body limit is small, so "large" is made smaller to match


def on_loop_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class Recorder:
    """Wraps a function and records, for each call, whether it ran on the event loop's thread."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.on_loop: list[bool] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.on_loop.append(on_loop_thread())
        return self.function(*args, **kwargs)


class ValidatingUser:
    """The USER resource type, with `validate` recorded."""

    def __init__(self) -> None:
        self.resource_type = app.http.user_routes.USER
        self.validate = Recorder(self.resource_type.validate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resource_type, name)


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.http.reading, "OFFLOAD_BYTES", LARGE, raising=False)


def emails(count: int) -> list[dict[str, str]]:
    return [{"value": f"user{index}@example.com"} for index in range(count)]


async def test_a_large_patch_is_decided_off_the_event_loop_and_a_small_one_on_it(
    scim: httpx.AsyncClient, large: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(app.services.users.apply_patch)
    monkeypatch.setattr(app.services.users, "apply_patch", recorder)
    user = await create(scim)
    small = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]}
    big = {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "emails", "value": emails(100)}]}
    assert (await scim.patch(f"/Users/{user['id']}", json=small)).status_code == 200
    response = await scim.patch(f"/Users/{user['id']}", json=big)
    assert response.status_code == 200, response.text
    assert len(response.json()["emails"]) == 101
    assert recorder.on_loop == [True, False]


async def test_a_small_patch_to_a_user_holding_many_values_is_decided_off_the_event_loop(
    scim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few bytes of value filter compare every stored value: the user's size, not the body's, is the cost."""
    monkeypatch.setattr(app.services.users, "OFFLOAD_VALUES", 50)
    recorder = Recorder(app.services.users.apply_patch)
    monkeypatch.setattr(app.services.users, "apply_patch", recorder)
    few = await scim.post("/Users", json={"userName": "few-values@example.com", "emails": emails(10)})
    many = await scim.post("/Users", json={"userName": "many-values@example.com", "emails": emails(100)})
    assert (few.status_code, many.status_code) == (201, 201)
    remove = {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": 'emails[value co "user1"]'}]}
    for user in (few, many):
        response = await scim.patch(f"/Users/{user.json()['id']}", json=remove)
        assert response.status_code == 200, response.text
    assert len(response.json()["emails"]) == 100 - 11  # user1, user10 … user19
    assert recorder.on_loop == [True, False]


async def test_a_large_post_or_put_is_validated_off_the_event_loop(
    scim: httpx.AsyncClient, large: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_type = ValidatingUser()
    # An organization that declared no extension of its own is served the shared USER type.
    monkeypatch.setattr(app.services.org_schemas, "USER", user_type)
    created = await scim.post("/Users", json={"userName": "large@example.com", "emails": emails(100)})
    assert created.status_code == 201, created.text
    replaced = await scim.put(
        f"/Users/{created.json()['id']}", json={"userName": "large@example.com", "emails": emails(50)}
    )
    assert replaced.status_code == 200, replaced.text
    assert len(replaced.json()["emails"]) == 50
    assert user_type.validate.on_loop == [False, False]


async def test_adding_many_members_decides_and_records_off_the_event_loop(
    scim: httpx.AsyncClient,
    catalog: Catalog,  # noqa: F811
    large: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.services.groups, "OFF_LOOP_MEMBERS", 10, raising=False)
    monkeypatch.setattr(eventstore.store, "OFF_LOOP_EVENTS", 10, raising=False)
    joins = Recorder(User.join_group)
    monkeypatch.setattr(User, "join_group", lambda self, *args: joins(self, *args))
    members = [await new_user(scim) for _ in range(20)]
    group = await find_group(scim, "Statsig-Apollo-Admin")
    response = await scim.patch(f"/Groups/{group['id']}", json=patch(add(*members)))
    assert response.status_code == 204, response.text
    listed = (await scim.get(f"/Groups/{group['id']}", params={"attributes": "members"})).json()
    assert [member["value"] for member in listed["members"]] == members
    assert joins.on_loop == [False] * 20
