"""Admission control: how much database work one organization, and one token, may have in flight at once.

Every request of an organization that the rate limit lets through then waits for one of the process's pooled
connections, so an organization that sends enough slow requests at once (expensive filters, say) holds every
connection, and every other organization's requests queue behind it. The rate limit cannot prevent that: it
counts requests, not the time they hold a connection. So each organization, and each of its tokens, may have
only so many requests in progress; the next one is answered 429 at once, with Retry-After, rather than
queued behind its own organization's work until a timeout. The organization's cap is below the pool's size
by default, so that what is left serves the other organizations whatever one of them does.

A request counts from its authentication, which is where its organization becomes known and right before
its first query, to the end of its response. Counts are per process, like the rate limit's.
"""

from __future__ import annotations

import os
import uuid

import msgspec
from starlette.types import Scope

from app.infrastructure.settings import Settings
from scim.errors import ScimError

# Requests in progress finish in milliseconds, or within the statement timeout at worst; a second is enough
# for a slot to free up, and what Okta and Entra wait before retrying anyway.
RETRY_AFTER_SECONDS = 1
# Where a request's admission is kept in its ASGI scope, for `release_admission` to give back. In the scope
# itself, not in its "state", which servers may share between requests (asgi-lifespan's test server does).
_SLOT = "scimledger.admission"


def org_concurrency(settings: Settings, cores: int | None = None) -> int:
    """The organization's cap: the setting, or a quarter of the pool and at most half this machine's cores.
    The rest of the pool serves everyone else. And each request in progress may keep a database backend
    busy, so the cap is also how many cores of the database one organization can take: `make
    bench-tenant-fairness` on 2 cores, with the costliest filter the bounds admit, put another organization's
    p99 at 1.5x its idle p99 with a cap of 1, 3.7x with 2, and doubled its median with 5. The machine's cores
    stand in for the database's (the embedded server shares them); set SCIMLEDGER_ORG_CONCURRENCY for a
    database server of its own."""
    cores = cores if cores is not None else (os.cpu_count() or 2)
    return settings.org_concurrency or max(1, min(settings.pool_size // 4, cores // 2))


def shared_by_processes(settings: Settings, processes: int, cores: int | None = None) -> Settings:
    """The settings for each of `processes` serving on one host (`serve --workers N`): the counts are per
    process, so a cap the operator left to its default is divided between them, and the host's processes
    together let an organization have about as many requests in progress as one process would (at least one
    each). A cap the operator set is theirs: it stays as set, per process, as documented."""
    if settings.org_concurrency or processes <= 1:
        return settings
    per_process = max(1, org_concurrency(settings, cores) // processes)
    return msgspec.structs.replace(settings, org_concurrency=per_process)


def token_concurrency(settings: Settings) -> int:
    """A token's cap: the setting, or the organization's cap (one token, Okta's, is the usual case)."""
    return min(settings.token_concurrency or org_concurrency(settings), org_concurrency(settings))


class Admission:
    """Counts of requests in progress, by organization and by token, in this process."""

    def __init__(self, per_org: int, per_token: int) -> None:
        self.per_org = max(1, per_org)
        self.per_token = max(1, per_token)
        self._orgs: dict[uuid.UUID, int] = {}
        self._tokens: dict[uuid.UUID, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        return cls(org_concurrency(settings), token_concurrency(settings))

    def in_progress(self, org_id: uuid.UUID) -> int:
        return self._orgs.get(org_id, 0)

    def enter(self, scope: Scope, org_id: uuid.UUID, token_id: uuid.UUID) -> None:
        """Count this request against its organization and token until its response ends, or refuse it.

        No await between the check and the count: on one event loop, two requests cannot both take the last
        slot."""
        if _SLOT in scope:
            return  # already counted: a request is one unit of work however often it authenticates
        if self._orgs.get(org_id, 0) >= self.per_org:
            raise _busy(
                f"This organization already has {self.per_org} requests in progress, the most this service "
                "runs at once for one organization."
            )
        if self._tokens.get(token_id, 0) >= self.per_token:
            raise _busy(
                f"This token already has {self.per_token} requests in progress, the most this service runs at "
                "once for one token."
            )
        self._orgs[org_id] = self._orgs.get(org_id, 0) + 1
        self._tokens[token_id] = self._tokens.get(token_id, 0) + 1
        scope[_SLOT] = (self, org_id, token_id)

    def release(self, scope: Scope) -> None:
        """Give the request's slot back before its response ends: for a request that goes on without database
        work in progress (a long poll of the event feed, waiting)."""
        release_admission(scope)

    def leave(self, org_id: uuid.UUID, token_id: uuid.UUID) -> None:
        for counts, key in ((self._orgs, org_id), (self._tokens, token_id)):
            remaining = counts[key] - 1
            if remaining:
                counts[key] = remaining
            else:
                del counts[key]  # so that the maps hold only organizations and tokens with work in progress


def _busy(reason: str) -> ScimError:
    return ScimError(
        429,
        f"{reason} Retry after the time in Retry-After, and send fewer requests at once "
        "(SCIMLEDGER_ORG_CONCURRENCY and SCIMLEDGER_TOKEN_CONCURRENCY set these limits).",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def release_admission(scope: Scope) -> None:
    """Give the request's slot back, if it holds one. The edge's middleware (app/http/middleware.py) calls it
    once the response has ended, however it ended (an error, a client that hung up, a cancellation); in a
    middleware of its own, it cost every request one more ASGI layer for one dictionary lookup."""
    slot = scope.pop(_SLOT, None)
    if slot is not None:
        admission, org_id, token_id = slot
        admission.leave(org_id, token_id)
