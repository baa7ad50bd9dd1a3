"""What the daemon tells about itself: readiness, a status line, liveness, scrape-time gauges."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bridge.metrics import Metrics
from bridge.outbox import JobState
from bridge.outbox import jobs as outbox
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.poller import GatewayPoller
from bridge.rules import Directory
from bridge.runtime.cluster import Cluster
from bridge.runtime.settings import Settings
from bridge.runtime.supervisor import Supervisor
from bridge.store import Connection, Store


class Daemon(Protocol):
    """What health looks at in the running daemon (the daemon module builds on this one)."""

    commits_reported: int

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def store(self) -> Store: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def supervisor(self) -> Supervisor: ...
    @property
    def poller(self) -> GatewayPoller: ...
    @property
    def cluster(self) -> Cluster: ...
    @property
    def client(self) -> C123Client: ...
    @property
    def simulator(self) -> Any: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def url(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...
    @property
    def outputs(self) -> Mapping[str, Any]: ...


async def refresh_gauges(daemon: Daemon) -> None:
    """Outbox depth by state, the age of the oldest unsettled job, open incidents by state and
    the schedule members whose last page was not delivered (these two only when the config
    pages: paging is an optional part, loaded only then). One read of the store."""
    now = daemon.clock()
    metrics = daemon.metrics
    paging = _paging_reader(daemon.settings)

    def read(conn: Connection) -> tuple[dict[str, int], float | None, PagingFigures | None]:
        found = paging(conn) if paging is not None else None
        return outbox.job_states(conn), outbox.oldest_pending(conn), found

    states, oldest, figures = await daemon.store.read(read)
    for state in JobState:
        metrics.outbox_jobs.labels(state.value).set(states.get(state.value, 0))
    metrics.outbox_oldest.set(max(now - oldest, 0.0) if oldest is not None else 0.0)
    metrics.store_commits.inc(daemon.store.commits - daemon.commits_reported)
    daemon.commits_reported = daemon.store.commits
    daemon.cluster.gauges(metrics, daemon.poller.fenced)
    metrics.member_unreachable.clear()
    if figures is None:
        metrics.incidents.clear()
        return
    incidents, missed = figures
    for incident_state, count in incidents.items():
        metrics.incidents.labels(incident_state).set(count)
    for schedule, member in missed:
        metrics.member_unreachable.labels(schedule, member).set(1)


# Open incidents by state, and the (schedule, member) pairs whose last page was not delivered.
PagingFigures = tuple[dict[str, int], list[tuple[str, str]]]


def _paging_reader(settings: Settings) -> Callable[[Connection], PagingFigures] | None:
    """What paging's gauges read, or None while the config does not page."""
    config = settings.config
    if config.oncall is None:
        return None
    from bridge.paging import open_counts, unreachable

    schedules = config.oncall.schedules
    directory = Directory(config.contacts, config.groups)

    def read(conn: Connection) -> PagingFigures:
        counts = {state.value: count for state, count in open_counts(conn).items()}
        missed = [(m.schedule, m.member) for m in unreachable(conn, schedules, directory)]
        return counts, missed

    return read


def status_line(daemon: Daemon) -> str:
    """One line for `systemctl status`: where it listens and what it runs."""
    gateway = "built-in simulator" if daemon.simulator else daemon.client.config.base_url
    return (
        f"serving on {daemon.url}: {len(daemon.inputs)} inputs, {len(daemon.outputs)} outputs, "
        f"{len(daemon.settings.rules.names)} rules; gateway {gateway}"
    )


async def alive(daemon: Daemon) -> bool:
    """What feeds the systemd watchdog: the store answers within a second (a wedged writer
    stops it) and no task has failed for good (a restart of the service may cure what restarts
    of the task did not)."""
    if daemon.supervisor.dead():
        return False
    try:
        async with asyncio.timeout(1.0):
            await daemon.store.read(lambda conn: conn.execute("SELECT 1").fetchone())
    except Exception:
        return False
    return True


def readiness(daemon: Daemon) -> dict[str, str]:
    """Check name -> what is wrong ('' when fine): the store, the gateway, each failing task.

    Leadership is not a check: an instance that holds no lease still takes webhooks and sends.
    """
    problems = {"store": daemon.store.problem}
    balance = Action.GET_BALANCE.value
    gateway = daemon.poller.problems.get(balance, "")
    polls = daemon.cluster.poll.held  # only the account's poller asks for the balance
    if not gateway and polls and balance not in daemon.poller.answered:
        gateway = "not reached yet"
    problems["gateway"] = gateway
    for name, why in daemon.supervisor.problems().items():
        problems[f"task:{name}"] = why
    return problems
