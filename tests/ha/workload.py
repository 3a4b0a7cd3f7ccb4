"""The SCIM workload of the failover test: 8 clients writing as Okta does, each request made once and its
answer kept as Okta would see it, and the primary's failover in its midst."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import okta_user
from tests.ha.formation import Formation, Node
from tests.service import ServiceProcess

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
WRITERS = 8
# What the service answers when a commit's outcome is unknown (app/http/errors.py).
OUTCOME_UNKNOWN = "may or may not have been saved"
DEACTIVATE = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


def joining(user_id: str) -> dict[str, Any]:
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
    }


@dataclass
class Call:
    """One SCIM request and what came of it."""

    kind: str  # "create", "join" or "deactivate"
    key: tuple[str, ...]  # userName; (userName, group id); userName
    started: float
    finished: float
    status: int | None  # None: no answer (the connection broke, or the client gave up)
    retry_after: str | None = None
    detail: str = ""

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unknown(self) -> bool:
        return self.status is None or (self.status == 503 and OUTCOME_UNKNOWN in self.detail)

    @property
    def refused(self) -> bool:
        return not self.acknowledged and not self.unknown


@dataclass
class Workload:
    calls: list[Call] = field(default_factory=list)
    user_ids: dict[str, str] = field(default_factory=dict)  # userName → id, for the users created

    def of(self, kind: str) -> list[Call]:
        return [call for call in self.calls if call.kind == kind]


async def scim_writer(
    number: int, base: str, token: str, groups: list[str], workload: Workload, stopping: asyncio.Event
) -> None:
    """POST a user; add it to a group; deactivate every other one (the reactor then removes it from the
    organization). Each request is made once and its answer kept, as Okta would see it."""
    run = uuid.uuid4().hex[:6]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as client:

        async def call(
            kind: str, key: tuple[str, ...], method: str, path: str, body: Any
        ) -> httpx.Response | None:
            started = time.monotonic()
            try:
                response = await client.request(method, path, json=body)
            except httpx.TransportError:
                workload.calls.append(Call(kind, key, started, time.monotonic(), None))
                await asyncio.sleep(0.05)
                return None
            detail = response.json().get("detail", "") if response.status_code >= 400 else ""
            status, retry_after = response.status_code, response.headers.get("retry-after")
            workload.calls.append(Call(kind, key, started, time.monotonic(), status, retry_after, detail))
            if response.status_code == 503:
                await asyncio.sleep(0.1)  # Retry-After asks for 5 s; a short pause keeps the test short
            return response

        sequence = 0
        while not stopping.is_set():
            sequence += 1
            user_name = f"ha-{run}-{number}-{sequence}@failover.example"
            created = await call("create", (user_name,), "POST", "/Users", okta_user(user_name))
            if created is None or created.status_code != 201:
                continue
            user_id = created.json()["id"]
            workload.user_ids[user_name] = user_id
            group = groups[sequence % len(groups)]
            await call("join", (user_name, group), "PATCH", f"/Groups/{group}", joining(user_id))
            if sequence % 2 == 0:
                await call("deactivate", (user_name,), "PATCH", f"/Users/{user_id}", DEACTIVATE)


@dataclass(frozen=True)
class Failover:
    """What the clients saw of one failover: seconds from the fault's start to the first success of a request
    sent after the fault was over, and from the first refusal (or unanswered request) to the last."""

    serving_again: float
    refusing: float


async def write_through_a_failover(
    formation: Formation,
    service: ServiceProcess,
    token: str,
    workload: Workload,
    fault: Callable[[Node], None],
    before_fault: float,
    after_recovery: float,
    recovery_bound: float,
) -> Failover:
    """Write; make the primary node fail over by `fault(primary)` (a crash, or a switchover, which returns
    once done); write until a request sent after that succeeds, and a little more."""
    async with httpx.AsyncClient(base_url=service.base, headers={"Authorization": f"Bearer {token}"}) as scim:
        groups = [group["id"] for group in (await scim.get("/Groups")).json()["Resources"]]
    assert len(groups) == 2
    primary = await formation.primary()
    stopping = asyncio.Event()
    writers = [
        asyncio.create_task(scim_writer(number, service.base, token, groups, workload, stopping))
        for number in range(WRITERS)
    ]
    try:
        await asyncio.sleep(before_fault)
        fault_at = time.monotonic()
        await asyncio.to_thread(fault, primary)
        done_at = time.monotonic()
        while not (
            served := [call for call in workload.calls if call.acknowledged and call.started > done_at]
        ):
            assert time.monotonic() - fault_at < recovery_bound, (
                f"no write succeeded within {recovery_bound} s of the failover:\n"
                f"{Counter(call.status for call in workload.calls)}\n{formation.logs()}"
            )
            await asyncio.sleep(0.05)
        serving_again = min(call.finished for call in served) - fault_at
        await asyncio.sleep(after_recovery)
    finally:
        stopping.set()
        await asyncio.gather(*writers)
    failed = [call for call in workload.calls if call.started >= fault_at and not call.acknowledged]
    refusing = max(call.finished for call in failed) - min(call.started for call in failed) if failed else 0.0
    return Failover(serving_again, refusing)
