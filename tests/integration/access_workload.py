"""A random organization's life, driven through the real services, for the access check's tests: members
join and leave groups (by Okta's pushes, and by an admin in the app while Okta has not linked the group), Okta
deactivates and reactivates, admins remove and restore, unlink, rename and
archive; the reactors run now and then (not always at once, so that a deactivated user keeps their groups
for a while, as they do until the runner reaches them)."""

from __future__ import annotations

import datetime
import random
import uuid
from dataclasses import dataclass, field

import asyncpg

from app.services.catalog import PROJECT, ROLE, Kind
from app.services.container import Services
from domain.catalog import group_id_for
from domain.errors import DomainError
from eventstore.records import EVENT_COLUMNS, Metadata, RecordedEvent
from reactors.membership import DeactivationRemovesFromOrganization, RemovalDeactivates
from scim.group_patch import GroupChange, MembershipStep

OKTA = Metadata("token:okta-test", request_id="req-okta")
ADMIN = Metadata("admin:test", request_id="req-admin")
_REACTORS = (DeactivationRemovesFromOrganization(), RemovalDeactivates())


@dataclass
class Org:
    org_id: uuid.UUID
    users: dict[uuid.UUID, str] = field(default_factory=dict)  # id → userName
    projects: dict[uuid.UUID, str] = field(default_factory=dict)  # id → current name
    roles: dict[uuid.UUID, str] = field(default_factory=dict)
    archived: set[uuid.UUID] = field(default_factory=set)
    deleted: set[uuid.UUID] = field(
        default_factory=set
    )  # users Okta deleted: still asked about, never chosen
    # Instants taken between actions, by the database's clock (the one recorded_at is read from).
    instants: list[datetime.datetime] = field(default_factory=list)
    reacted_up_to: int = 0  # the log position the reactors have read the org's events to

    @property
    def pairs(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return [(project, role) for project in self.projects for role in self.roles]

    def live_groups(self) -> list[uuid.UUID]:
        return [
            group_id_for(project, role)
            for project, role in self.pairs
            if project not in self.archived and role not in self.archived
        ]


async def run_reactors(services: Services, pool: asyncpg.Pool, org: Org) -> None:
    """The reactors' decisions on the org's events not yet reacted to, as the runner would make them."""
    rows = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 AND position > $2 ORDER BY tx, position",
        org.org_id,
        org.reacted_up_to,
    )
    if not rows:
        return
    events = [RecordedEvent(*row) for row in rows]
    org.reacted_up_to = max(event.position for event in events)
    for reactor in _REACTORS:
        concerned = [event for event in events if event.type in reactor.event_types]
        if concerned:
            async with services.store.transaction() as transaction:
                await reactor.handle(transaction, concerned)


async def new_org(services: Services, pool: asyncpg.Pool, projects: int = 2, roles: int = 2) -> Org:
    org = Org(uuid.uuid4())
    for index in range(projects):
        await _create(services, org, PROJECT, f"P{index}")
    for index in range(roles):
        await _create(services, org, ROLE, f"R{index}")
    for _ in range(6):
        await _provision(services, org)
    return org


async def _provision(services: Services, org: Org) -> None:
    name = f"u{len(org.users)}-{uuid.uuid4().hex[:6]}@x.org"
    row = await services.users.provision(org.org_id, {"userName": name, "active": True}, OKTA)
    org.users[row.user_id] = name


async def _create(services: Services, org: Org, kind: Kind, name: str) -> None:
    entity_id, _ = await services.catalog.create(kind, org.org_id, name, ADMIN)
    (org.projects if kind is PROJECT else org.roles)[entity_id] = name


async def step(services: Services, pool: asyncpg.Pool, org: Org, chance: random.Random) -> None:
    """One random action (refused ones included: a refusal records nothing, which is a case too)."""
    org_id = org.org_id
    user_id = chance.choice([user for user in org.users if user not in org.deleted])
    user_name = org.users[user_id]
    groups = org.live_groups()
    action = chance.choices(
        [
            "join",
            "leave",
            "resync",
            "deactivate",
            "reactivate",
            "remove",
            "restore",
            "react",
            "unlink",
            "rename",
            "archive",
            "delete",
            "grant in app",
            "revoke in app",
        ],
        weights=[30, 12, 5, 6, 6, 3, 3, 8, 3, 2, 1, 1, 10, 4],
    )[0]
    try:
        if action in ("join", "leave", "resync") and groups:
            group_id = chance.choice(groups)
            if action == "resync":
                chosen = chance.sample(
                    [user for user in org.users if user not in org.deleted], chance.randint(0, 3)
                )
                change = MembershipStep("replace", tuple(str(user) for user in chosen))
            else:
                change = MembershipStep("add" if action == "join" else "remove", (str(user_id),))
            await services.groups.change(org_id, group_id, GroupChange(steps=[change]), OKTA)
        elif action in ("deactivate", "reactivate"):
            attributes = {"userName": user_name, "active": action == "reactivate"}
            await services.users.replace(org_id, user_id, attributes, OKTA)
        elif action == "remove":
            await services.users.remove_from_organization(org_id, user_id, ADMIN)
        elif action == "restore":
            await services.users.restore(org_id, user_id, ADMIN)
        elif action == "react":
            await run_reactors(services, pool, org)
        elif action == "unlink" and groups:
            await services.groups.unlink(org_id, chance.choice(groups), OKTA)
        elif action == "rename":
            kind, names = chance.choice([(PROJECT, org.projects), (ROLE, org.roles)])
            live = [entity for entity in names if entity not in org.archived]
            entity = chance.choice(live)
            new_name = f"{names[entity].split('~')[0]}~{chance.randint(0, 10**6)}"
            await services.catalog.rename(kind, org_id, str(entity), new_name, ADMIN)
            names[entity] = new_name
        elif action == "archive":
            kind, names = chance.choice([(PROJECT, org.projects), (ROLE, org.roles)])
            live = [entity for entity in names if entity not in org.archived]
            if len(live) > 1:  # keep a pair alive, and make a new one so the org keeps a few
                entity = chance.choice(live)
                await services.catalog.archive(kind, org_id, str(entity), ADMIN)
                org.archived.add(entity)
                await _create(services, org, kind, f"N{len(names)}")
        elif action in ("grant in app", "revoke in app") and groups:
            # Refused (409) in a group Okta has linked: then only Okta's pushes change it, until an unlink.
            member = action == "grant in app"
            await services.groups.grant(org_id, chance.choice(groups), user_id, member, ADMIN)
        elif action == "delete":
            await services.users.delete(org_id, user_id, OKTA)
            org.deleted.add(user_id)
            await _provision(
                services, org
            )  # someone new, so that the org keeps a few users who can be granted
    except DomainError:
        pass
    org.instants.append(await pool.fetchval("SELECT clock_timestamp()"))


async def random_org(services: Services, pool: asyncpg.Pool, seed: int, steps: int) -> Org:
    chance = random.Random(seed)
    org = await new_org(services, pool)
    for _ in range(steps):
        await step(services, pool, org, chance)
    return org
