"""The HTTP edge's one table of what each refusal means: every refusal has a row, looked up by the MRO."""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil

import pytest
from starlette.requests import Request

import app
import domain
import eventstore
import projections
import reactors
import scim
from app.http.errors import DOMAIN_ERROR_ANSWERS, answer_for, on_domain_error
from domain.errors import DomainError, GroupNameTaken, NameTaken, NotFound, PreconditionFailed
from eventstore.store import ConcurrencyConflict

OUR_PACKAGES = (app, domain, eventstore, projections, reactors, scim)


def every_subclass(cls: type[Exception]) -> set[type[Exception]]:
    found: set[type[Exception]] = set()
    for subclass in cls.__subclasses__():
        found |= {subclass, *every_subclass(subclass)}
    return found


def our_domain_errors() -> set[type[Exception]]:
    """Every DomainError subclass that our packages define, wherever one is defined."""
    for package in OUR_PACKAGES:
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    ours = tuple(f"{package.__name__}." for package in OUR_PACKAGES)
    return {error for error in every_subclass(DomainError) if error.__module__.startswith(ours)}


def request() -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/scim/v2/Users", "headers": [], "query_string": b""}
    )


def test_every_domain_error_has_an_answer_of_its_own_or_of_a_listed_ancestor() -> None:
    unanswered = sorted(error.__name__ for error in our_domain_errors() if answer_for(error) is None)
    assert unanswered == []


def test_every_domain_error_is_defined_in_domain_errors() -> None:
    elsewhere = sorted(f"{error.__module__}.{error.__name__}" for error in our_domain_errors())
    assert [name for name in elsewhere if not name.startswith("domain.errors.")] == []


def test_a_subclass_answers_as_its_nearest_listed_ancestor() -> None:
    assert GroupNameTaken not in DOMAIN_ERROR_ANSWERS
    assert answer_for(GroupNameTaken) == DOMAIN_ERROR_ANSWERS[NameTaken]


def test_a_concurrency_conflict_is_the_stores_error_and_still_answered_409() -> None:
    assert not issubclass(ConcurrencyConflict, DomainError)
    answer = answer_for(ConcurrencyConflict)
    assert answer is not None
    assert (answer.status, answer.scim_type) == (409, None)


async def test_a_refusal_is_answered_with_its_status_scim_type_and_message() -> None:
    response = await on_domain_error(request(), DomainError("A project needs a name."))
    assert response.status_code == 400
    assert json.loads(response.body)["scimType"] == "invalidValue"
    assert json.loads(response.body)["detail"] == "A project needs a name."
    response = await on_domain_error(request(), NotFound("No user {x} here."))
    assert response.status_code == 404
    assert json.loads(response.body)["detail"] == "No user {x} here."
    response = await on_domain_error(request(), PreconditionFailed(7))
    assert response.status_code == 412
    assert json.loads(response.body)["detail"] == (
        "The resource changed since the version in If-Match. The resource is now at version 7."
    )


async def test_a_domain_error_without_a_row_is_a_logged_500_not_a_silent_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unlisted(DomainError):
        pass

    with caplog.at_level(logging.ERROR, logger="scimledger.http"):
        response = await on_domain_error(request(), Unlisted("something new"))
    assert response.status_code == 500
    assert "scimType" not in json.loads(response.body)
    assert "Unlisted has no row in DOMAIN_ERROR_ANSWERS" in caplog.text
