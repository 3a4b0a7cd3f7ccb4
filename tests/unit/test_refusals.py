"""What a refused membership or a push to a renamed or archived group tells the admin, decided from events."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from domain.catalog import Project
from domain.errors import MAX_NAMED_MEMBERS, InactiveMember, InvalidMember, moment
from domain.users import User


def replayed(aggregate: Aggregate) -> Any:
    """The aggregate as the store rebuilds it: from its events alone."""
    rebuilt = None
    for recorded in aggregate.collect_events():
        rebuilt = recorded.mutate(rebuilt)
    return rebuilt


@pytest.mark.parametrize(
    ("attributes", "described"),
    [
        ({"displayName": "Ann Lee", "name": {"formatted": "Ms Ann Lee"}}, "'ann' (Ann Lee)"),
        ({"name": {"formatted": "Ms Ann Lee", "givenName": "Ann"}}, "'ann' (Ms Ann Lee)"),
        ({"name": {"givenName": "Ann", "familyName": "Lee"}}, "'ann' (Ann Lee)"),
        ({"name": {"familyName": "Lee"}}, "'ann' (Lee)"),
        ({}, "'ann'"),
    ],
)
def test_a_user_is_described_by_user_name_and_the_best_display_name_there_is(
    attributes: dict[str, Any], described: str
) -> None:
    user = User(org_id="org", attributes={"userName": "ann", **attributes}, active=True)
    assert user.described() == described


def test_an_admins_removal_is_dated_by_its_event_and_the_date_survives_a_replay() -> None:
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.remove_from_organization("admin")
    removed = user.pending_events[-1]
    user.set_active(False)  # as the reactor does, once it has revoked their access
    when = moment(removed.timestamp)
    assert user.access_refusal() == f"was removed from the organization in the app on {when}"
    rebuilt = replayed(user)
    assert rebuilt.access_refusal() == f"was removed from the organization in the app on {when}"
    with pytest.raises(
        InactiveMember, match=f"User 'ann' was removed from the organization in the app on {when}"
    ):
        rebuilt.join_group("g1", "push")
    rebuilt.restore()
    assert (rebuilt.access_refusal(), rebuilt.departure) == (None, None)


def test_an_identity_providers_removal_is_no_admin_removal() -> None:
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.set_active(False)
    user.remove_from_organization("okta_deactivation")
    assert replayed(user).access_refusal() == "is deactivated in the identity provider"


def test_a_project_remembers_its_names_and_when_it_was_renamed_and_archived() -> None:
    project = Project(org_id="org", name="Apollo")
    project.rename("Artemis")
    project.rename("Hermes")
    renamed = moment(project.pending_events[-1].timestamp)
    project.archive()
    archived = moment(project.pending_events[-1].timestamp)
    rebuilt = replayed(project)
    assert rebuilt.names == ["Apollo", "Artemis", "Hermes"]
    assert rebuilt.renamed_since("Apollo") == f"the app renamed the project 'Apollo' to 'Hermes' on {renamed}"
    assert rebuilt.archival() == f"the app archived the project 'Hermes' on {archived}"


def test_a_refusal_names_a_bounded_number_and_counts_the_rest() -> None:
    refusals = [f"'u{index}' is not a user of this organization" for index in range(MAX_NAMED_MEMBERS + 5)]
    detail = str(InvalidMember(refusals))
    assert detail.startswith(f"{MAX_NAMED_MEMBERS + 5} members of this request cannot be added")
    assert f"'u{MAX_NAMED_MEMBERS - 1}'" in detail
    assert f"'u{MAX_NAMED_MEMBERS}'" not in detail
    assert detail.endswith("; and 5 more.")
    assert str(InvalidMember(refusals[:1])).startswith("1 member of this request")
