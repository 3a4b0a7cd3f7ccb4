"""A project or role refused because one of its groups would take another group's name says which group has
that name, spelled as it is, and which project and role hold it (issue 18, point 9)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.errors import NameTaken
from eventstore.records import Metadata

ADMIN = Metadata("admin:names")


async def catalog_with_apollo_admin_viewer(services: Services) -> uuid.UUID:
    org_id = uuid.uuid4()
    await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    await services.catalog.create(ROLE, org_id, "Admin-Viewer", ADMIN)  # Statsig-Apollo-Admin-Viewer
    await services.catalog.create(ROLE, org_id, "Viewer", ADMIN)
    await services.catalog.create(PROJECT, org_id, "Hermes", ADMIN)
    return org_id


async def test_a_new_project_whose_group_takes_a_name_names_the_group_and_its_pair(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = await catalog_with_apollo_admin_viewer(services)
    events_before = await pool.fetchval("SELECT count(*) FROM events WHERE org_id = $1", org_id)
    with pytest.raises(NameTaken) as refused:
        await services.catalog.create(PROJECT, org_id, "apollo-admin", ADMIN)
    assert str(refused.value) == (
        "The group 'Statsig-apollo-admin-Viewer' would have the same name as the existing group "
        "'Statsig-Apollo-Admin-Viewer' of project 'Apollo' and role 'Admin-Viewer' (group names are compared "
        "ignoring case, and Okta links groups by name). Choose another project or role name."
    )
    assert await pool.fetchval("SELECT count(*) FROM events WHERE org_id = $1", org_id) == events_before
    projects = await pool.fetch("SELECT name FROM catalog_projects WHERE org_id = $1 ORDER BY name", org_id)
    assert [row[0] for row in projects] == ["Apollo", "Hermes"]


async def test_a_rename_whose_group_takes_a_name_names_the_group_and_its_pair(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = await catalog_with_apollo_admin_viewer(services)
    with pytest.raises(NameTaken) as refused:
        await services.catalog.rename(PROJECT, org_id, "Hermes", "APOLLO-admin", ADMIN)
    message = str(refused.value)
    assert "'Statsig-APOLLO-admin-Viewer' would have the same name as the existing group " in message
    assert "'Statsig-Apollo-Admin-Viewer' of project 'Apollo' and role 'Admin-Viewer'" in message
    names = await pool.fetch("SELECT display_name FROM scim_groups WHERE org_id = $1", org_id)
    assert "Statsig-Hermes-Viewer" in {row[0] for row in names}
