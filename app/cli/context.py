"""What every database command of `scimledger` is given, shared by app.cli.main and the command modules beside it."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.services import tenancy
from app.services.container import Services
from domain.errors import NotFound
from eventstore.pool import Connection
from eventstore.records import Metadata


@dataclass(frozen=True, slots=True)
class Context:
    """What a database command gets: the services `serve` would build, one connection for queries, and
    where the database is, for messages."""

    services: Services
    connection: Connection
    where: str

    async def org(self, reference: str) -> tenancy.Org:
        """The organization of `--org`; one that is not found is reported with the database looked in, since
        the usual cause is a DATABASE_URL or data dir other than the one meant."""
        try:
            return await tenancy.find_org(self.connection, reference)
        except NotFound as error:
            raise NotFound(
                f"No organization '{reference}' in {self.where}; 'scimledger org list' lists those there."
            ) from error

    async def orgs(self) -> list[tenancy.Org]:
        """Every organization, saying on stderr where none was found."""
        orgs = await tenancy.list_orgs(self.connection)
        if not orgs:
            print(f"scimledger: no organizations in {self.where}", file=sys.stderr)
        return orgs


Handler = Callable[[Context, argparse.Namespace], Awaitable[int]]


def admin() -> Metadata:
    """CLI actions are an org admin's, recorded as such on the events they cause."""
    return Metadata(actor=f"admin:{getpass.getuser()}")
