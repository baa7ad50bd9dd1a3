"""A paging desk on a real store: incidents opened through a policy, timers fired as the daemon
will fire them (each in the transaction that removes it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import bridge.paging.escalation as escalation
import bridge.paging.incidents as incidents
from bridge.events import Conversation
from bridge.paging import PolicyConfig, escalation_timeline
from bridge.paging.escalation import Escalation, IncidentPage
from bridge.paging.incidents import Transition
from bridge.rules.config import ContactConfig, Directory
from bridge.store import Connection, Store, timers

T = TypeVar("T")
T0 = 1_796_000_000.0  # 2026-11-30
MINUTE = 60.0
CONTACTS = {
    name: ContactConfig(number=f"1510211{index:04}", name=name.title())
    for index, name in enumerate(["alice", "bob", "carol", "dave"])
}
NUMBER = {name: contact.number for name, contact in CONTACTS.items()}
DIRECTORY = Directory(CONTACTS, {"leads": ["carol", "dave"]})
POLICIES = {
    # alice at once, bob 5 minutes later; a second pass 2 minutes after bob.
    "ops": PolicyConfig.model_validate(
        {
            "steps": [{"notify": ["alice"], "after": "2m"}, {"notify": ["bob"], "after": "5m"}],
            "repeat": 1,
            "ack_timeout": "30m",
            "report_timeout": "3m",
        }
    ),
    # Two people in the first step, then bob.
    "pair": PolicyConfig.model_validate(
        {
            "steps": [{"notify": ["group:leads"]}, {"notify": ["bob"], "after": "10m"}],
            "report_timeout": "3m",
        }
    ),
}


@dataclass
class Desk:
    """Opens incidents, fires due timers, and queues (stands in for) the pages' SMS jobs."""

    store: Store
    reopen: Callable[[], Store]  # another store on the same file or database, for a restart
    jobs: dict[int, IncidentPage] = field(default_factory=dict)  # job id -> page

    async def write(self, work: Callable[[Connection], T]) -> T:
        return await self.store.write(work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        return await self.store.read(work)

    def queue(self, conn: Connection, result: Escalation) -> None:
        for page in result.pages:
            job_id = 1000 + page.page
            escalation.attach_job(conn, page.page, job_id)
            self.jobs[job_id] = page

    def job_of(self, page: IncidentPage) -> int:
        return next(job for job, queued in self.jobs.items() if queued == page)

    async def open(
        self,
        now: float,
        group: str = "db1",
        policy: str = "ops",
        conversation: Conversation | None = None,
    ) -> tuple[Transition, Escalation | None]:
        def work(conn: Connection) -> tuple[Transition, Escalation | None]:
            opened = incidents.open_incident(
                conn,
                "critical",
                group,
                policy,
                POLICIES[policy],
                f"DiskFull {group}",
                None,
                conversation,
                now,
            )
            if opened.change is not incidents.Change.OPENED:
                return opened, None
            timeline = escalation_timeline(
                POLICIES[policy], DIRECTORY, {}, datetime.fromtimestamp(now, UTC)
            )
            started = escalation.start_escalation(conn, opened.incident.id, timeline, now)
            self.queue(conn, started)
            return opened, started

        return await self.write(work)

    async def tick(self, now: float) -> list[Escalation]:
        """Fire every timer due by `now`, as the daemon's timer task will."""

        def fire(conn: Connection, timer: timers.Timer) -> Escalation:
            result = escalation.on_timer(conn, timer, now)
            self.queue(conn, result)
            return result

        return await self.write(lambda conn: timers.fire_due(conn, now, 100, fire))

    async def report(self, page: IncidentPage, status: str, now: float) -> Escalation:
        def work(conn: Connection) -> Escalation:
            result = escalation.delivery_report(conn, self.job_of(page), status, now)
            self.queue(conn, result)
            return result

        return await self.write(work)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one of the paging functions (conn first) in a write."""
        return await self.write(lambda conn: function(conn, *args, **kwargs))


def paged_names(results: list[Escalation] | Escalation | None) -> list[str]:
    if results is None:
        return []
    if isinstance(results, Escalation):
        results = [results]
    return [page.name for result in results for page in result.pages]
