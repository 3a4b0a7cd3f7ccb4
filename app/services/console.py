"""The console's way in: one-time sign-in links and the server-side sessions they start.

The host app asks for a link for one of its customer's people (`POST /api/v1/orgs/{org}/portal-links`, or
`scimledger console link`), with an intent that bounds what the session may do: `setup` (the identity
provider's connection and its SCIM tokens), `admin` (setup, and the organization's users, groups, catalog and
webhooks) or `audit` (read-only history, reviews and the timeline). The link is 256 random bits shown once;
only their SHA-256 is kept, as for tokens. Opening it shows a page whose button signs in (a POST): a mail
scanner or a chat client's preview that fetches the URL does not use it up. Signing in uses the link up in
the statement that checks it, so two sign-ins at once cannot both succeed.

A session is kept on the server; its cookie holds the organization's id, the session's id and a secret of its
own, of which only the hash is stored. It ends after SCIMLEDGER_CONSOLE_IDLE_SECONDS without a request, after
SCIMLEDGER_CONSOLE_SESSION_SECONDS in any case, at sign-out, or when revoked. Its CSRF token is derived from its
secret (an HMAC), so that it needs no storage and cannot be computed without the cookie.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
import uuid
from typing import Literal, get_args

import asyncpg
import msgspec

from domain.errors import DomainError, LinkRefused
from eventstore.pool import Connection
from eventstore.records import Metadata

Intent = Literal["setup", "admin", "audit"]
INTENTS: tuple[Intent, ...] = get_args(Intent)
# What each intent may open. An admin also sets up the connection; an auditor reads and changes nothing.
SECTIONS: dict[Intent, frozenset[str]] = {
    "setup": frozenset({"setup"}),
    "admin": frozenset({"setup", "admin"}),
    "audit": frozenset({"audit"}),
}
# What every session may open, whatever its intent: its home and signing out.
ANY_SECTION = "any"
# The session's idle clock is written at most this often, as tokens' last use is.
_SEEN_RESOLUTION = datetime.timedelta(minutes=1)
MAX_LABEL_LENGTH = 100


class PortalLink(msgspec.Struct, frozen=True):
    link_id: uuid.UUID
    org_id: uuid.UUID
    intent: Intent
    label: str
    # The path to open, from the service's root (`/console/sign-in/{org}/{secret}`): shown once.
    path: str
    expires_at: datetime.datetime


class LinkInfo(msgspec.Struct, frozen=True):
    """A link as the sign-in page shows it before it is used."""

    org_name: str
    intent: Intent
    label: str
    expires_at: datetime.datetime


class ConsoleSession(msgspec.Struct, frozen=True):
    org_id: uuid.UUID
    org_name: str
    session_id: uuid.UUID
    intent: Intent
    label: str
    csrf_token: str
    expires_at: datetime.datetime

    @property
    def actor(self) -> str:
        return f"console:{self.label}"

    def metadata(self, request_id: str | None) -> Metadata:
        return Metadata(actor=self.actor, request_id=request_id)

    def may_open(self, section: str) -> bool:
        return section == ANY_SECTION or section in SECTIONS[self.intent]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _csrf_token(secret: str) -> str:
    return hmac.new(secret.encode(), b"scimledger console csrf", hashlib.sha256).hexdigest()


def checked_label(label: str) -> str:
    label = " ".join(label.split())
    if not label:
        raise DomainError(
            "A sign-in link needs a label: who it is for, as the console's history will name them."
        )
    if len(label) > MAX_LABEL_LENGTH:
        raise DomainError(
            f"A link's label is at most {MAX_LABEL_LENGTH} characters; this one has {len(label)}."
        )
    return label


def checked_intent(intent: str) -> Intent:
    for known in INTENTS:
        if intent == known:
            return known
    raise DomainError(f"Unknown intent '{intent}': use one of {', '.join(INTENTS)}.")


class ConsoleAccess:
    """Links and sessions, on the service's pool."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        link_seconds: float,
        idle_seconds: float,
        session_seconds: float,
    ) -> None:
        self._pool = pool
        self._link_lifetime = datetime.timedelta(seconds=link_seconds)
        self._idle = datetime.timedelta(seconds=idle_seconds)
        self._lifetime = datetime.timedelta(seconds=session_seconds)

    async def issue_link(self, org_id: uuid.UUID, intent: str, label: str, created_by: str) -> PortalLink:
        intent_ = checked_intent(intent)
        label = checked_label(label)
        secret = secrets.token_urlsafe(32)
        link_id = uuid.uuid4()
        expires_at = await self._pool.fetchval(
            "INSERT INTO console_links (org_id, link_id, secret_hash, intent, label, created_by, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval) RETURNING expires_at",
            org_id,
            link_id,
            _digest(secret),
            intent_,
            label,
            created_by,
            self._link_lifetime,
        )
        return PortalLink(link_id, org_id, intent_, label, f"/console/sign-in/{org_id}/{secret}", expires_at)

    async def peek_link(self, org_id: uuid.UUID, secret: str) -> LinkInfo:
        """The link, if it can still be used; LinkRefused saying why not. Uses nothing up."""
        row = await self._pool.fetchrow(
            "SELECT orgs.name, intent, label, expires_at, used_at, expires_at <= now() AS expired, secret_hash "
            "FROM console_links JOIN orgs USING (org_id) WHERE org_id = $1 AND secret_hash = $2",
            org_id,
            _digest(secret),
        )
        _refuse_unusable(row, secret)
        assert row is not None
        return LinkInfo(row["name"], row["intent"], row["label"], row["expires_at"])

    async def sign_in(self, org_id: uuid.UUID, secret: str) -> tuple[ConsoleSession, str]:
        """Use the link up and start a session: the session and its cookie's value. LinkRefused when the link
        is unknown, expired or used (by this sign-in's twin too: the UPDATE lets one through)."""
        session_secret = secrets.token_urlsafe(32)
        session_id = uuid.uuid4()
        async with self._pool.acquire() as connection, connection.transaction():
            link = await connection.fetchrow(
                "UPDATE console_links SET used_at = now() "
                "WHERE org_id = $1 AND secret_hash = $2 AND used_at IS NULL AND expires_at > now() "
                "RETURNING link_id, intent, label",
                org_id,
                _digest(secret),
            )
            if link is None:
                await self._explain_refusal(connection, org_id, secret)
            assert link is not None
            row = await connection.fetchrow(
                "INSERT INTO console_sessions "
                "(org_id, session_id, secret_hash, link_id, intent, label, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval) "
                "RETURNING expires_at, (SELECT name FROM orgs WHERE org_id = $1) AS org_name",
                org_id,
                session_id,
                _digest(session_secret),
                link["link_id"],
                link["intent"],
                link["label"],
                self._lifetime,
            )
        assert row is not None  # an INSERT … RETURNING returns its row
        session = ConsoleSession(
            org_id,
            row["org_name"],
            session_id,
            link["intent"],
            link["label"],
            _csrf_token(session_secret),
            row["expires_at"],
        )
        return session, f"{org_id}.{session_id}.{session_secret}"

    async def _explain_refusal(self, connection: Connection, org_id: uuid.UUID, secret: str) -> None:
        row = await connection.fetchrow(
            "SELECT used_at, expires_at <= now() AS expired, secret_hash FROM console_links "
            "WHERE org_id = $1 AND secret_hash = $2",
            org_id,
            _digest(secret),
        )
        _refuse_unusable(row, secret)
        raise LinkRefused("This sign-in link could not be used. Ask the app for a new one.", gone=True)

    async def session(self, cookie: str) -> ConsoleSession | None:
        """The live session a cookie names, its idle clock touched; None when there is none (unknown,
        revoked, idle too long, past its lifetime, or a cookie that is not one of ours)."""
        parts = cookie.split(".")
        if len(parts) != 3:
            return None
        try:
            org_id, session_id = uuid.UUID(parts[0]), uuid.UUID(parts[1])
        except ValueError:
            return None
        secret = parts[2]
        # One statement: the session if live, its idle clock moved on when it is over a minute old.
        row = await self._pool.fetchrow(
            "WITH live AS ("
            "  SELECT console_sessions.*, orgs.name AS org_name FROM console_sessions JOIN orgs USING (org_id) "
            "  WHERE org_id = $1 AND session_id = $2 AND revoked_at IS NULL AND expires_at > now() "
            "    AND last_seen_at > now() - $3::interval"
            "), touched AS ("
            "  UPDATE console_sessions SET last_seen_at = now() WHERE org_id = $1 AND session_id = $2 "
            "    AND EXISTS (SELECT 1 FROM live WHERE live.secret_hash = $5) "
            "    AND last_seen_at < now() - $4::interval"
            ") SELECT * FROM live",
            org_id,
            session_id,
            self._idle,
            _SEEN_RESOLUTION,
            _digest(secret),
        )
        if row is None or not hmac.compare_digest(row["secret_hash"], _digest(secret)):
            return None
        return ConsoleSession(
            org_id,
            row["org_name"],
            session_id,
            row["intent"],
            row["label"],
            _csrf_token(secret),
            row["expires_at"],
        )

    async def sign_out(self, session: ConsoleSession) -> None:
        await self._pool.execute(
            "UPDATE console_sessions SET revoked_at = now() WHERE org_id = $1 AND session_id = $2 "
            "AND revoked_at IS NULL",
            session.org_id,
            session.session_id,
        )

    async def revoke_sessions(self, org_id: uuid.UUID) -> int:
        """End every live session of the organization (the host app's "sign everyone out"): how many."""
        revoked = await self._pool.fetch(
            "UPDATE console_sessions SET revoked_at = now() WHERE org_id = $1 AND revoked_at IS NULL "
            "AND expires_at > now() RETURNING session_id",
            org_id,
        )
        return len(revoked)


def _refuse_unusable(row: asyncpg.Record | None, secret: str) -> None:
    """LinkRefused saying why the link `row` (None: no such link) cannot be used; nothing when it can."""
    if row is None or not hmac.compare_digest(row["secret_hash"], _digest(secret)):
        raise LinkRefused(
            "This sign-in link is not valid: it may have been copied incompletely. Ask the app for a new link."
        )
    if row["used_at"] is not None:
        raise LinkRefused(
            "This sign-in link has already been used: each link signs in once. Ask the app for a new link "
            "(open it from the app again).",
            gone=True,
        )
    if row["expired"]:
        raise LinkRefused(
            "This sign-in link has expired. Ask the app for a new link (open it from the app again).",
            gone=True,
        )
