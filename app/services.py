"""What a request handler may use, built once per process in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.settings import Settings
from app.tenancy import Authenticator
from app.users import UserService
from eventstore.store import EventStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool[asyncpg.Record]
    store: EventStore
    users: UserService
    authenticator: Authenticator
