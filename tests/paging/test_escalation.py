"""Escalation on durable timers: steps on time, failover on failed or missing reports, restarts."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest

import bridge.paging.escalation as escalation
import bridge.paging.incidents as incidents
from bridge.paging import NobodyOnCall
from bridge.paging.escalation import Cause
from bridge.paging.incidents import Change, State
from bridge.store import Connection, timers
from tests.paging.desk import MINUTE, T0, Desk, paged_names


def next_due(desk: Desk) -> object:
    return desk.read(timers.next_due)


async def settle_reports(desk: Desk, now: float) -> None:
    """Every page queued so far was delivered (so report timeouts stay out of the way)."""
    for page in list(desk.jobs.values()):
        await desk.report(page, "delivered", now)


async def test_an_unanswered_incident_walks_every_step_and_repeat_then_ends(desk: Desk) -> None:
    opened, started = await desk.open(T0)
    assert opened.change is Change.OPENED
    assert paged_names(started) == ["Alice"]
    assert started is not None
    assert started.pages[0].text.startswith(f"[#{opened.incident.id}] DiskFull db1 - reply 1a")
    await settle_reports(desk, T0 + 10)
    assert await desk.tick(T0 + 5 * MINUTE - 1) == []  # nothing before its time
    assert await next_due(desk) == T0 + 5 * MINUTE
    assert paged_names(await desk.tick(T0 + 5 * MINUTE)) == ["Bob"]
    await settle_reports(desk, T0 + 5 * MINUTE)
    # The second pass: alice 2 minutes after bob, bob 5 minutes after her.
    assert paged_names(await desk.tick(T0 + 7 * MINUTE)) == ["Alice"]
    await settle_reports(desk, T0 + 7 * MINUTE)
    assert paged_names(await desk.tick(T0 + 12 * MINUTE)) == ["Bob"]
    await settle_reports(desk, T0 + 12 * MINUTE)
    # The last page is given the policy's longest wait (5m), then paging is over: said once.
    assert await next_due(desk) == T0 + 17 * MINUTE
    (end,) = await desk.tick(T0 + 17 * MINUTE)
    assert end.exhausted
    assert end.pages == ()
    assert await next_due(desk) is None
    assert await desk.tick(T0 + 60 * MINUTE) == []
    # Pages per incident: the steps' targets times (repeat + 1), and no more.
    assert len(desk.jobs) == 4


async def test_a_second_alert_of_the_group_does_not_restart_paging(desk: Desk) -> None:
    opened, _ = await desk.open(T0)
    again, restarted = await desk.open(T0 + MINUTE)
    assert restarted is None
    assert again.change is Change.ALERT_ADDED
    assert again.incident.id == opened.incident.id
    assert again.incident.alerts == 2
    assert [p.name for p in again.paged] == ["Alice"]
    assert await next_due(desk) == T0 + 3 * MINUTE  # alice's report timeout, as before


async def test_a_storm_of_alerts_on_one_group_pages_within_the_policy_bound(desk: Desk) -> None:
    for second in range(1000):
        await desk.open(T0 + second * 0.01)
    now = T0
    while (due := await desk.read(timers.next_due)) is not None:
        now = due
        await settle_reports(desk, now)
        await desk.tick(now)
    (incident,) = await desk.read(lambda c: c.execute("SELECT alerts FROM incidents").fetchall())
    assert incident["alerts"] == 1000
    assert len(desk.jobs) == 4  # 2 steps x 1 target x (repeat 1 + 1)


async def test_acknowledging_stops_paging_until_the_ack_timeout_starts_it_over(
    desk: Desk,
) -> None:
    opened, _ = await desk.open(T0)
    number = opened.incident.id
    acked = await desk.call(incidents.acknowledge, number, "Alice", T0 + MINUTE)
    assert acked.change is Change.ACKNOWLEDGED
    assert acked.incident.acked_until == T0 + 31 * MINUTE
    # Bob's step and alice's report timeout are gone; the acknowledgement's end is what is left.
    assert await next_due(desk) == T0 + 31 * MINUTE
    assert await desk.tick(T0 + 30 * MINUTE) == []
    (again,) = await desk.tick(T0 + 31 * MINUTE)
    assert again.cause is Cause.ACK_TIMEOUT
    assert again.transition is not None
    assert again.transition.change is Change.RETRIGGERED
    assert paged_names(again) == ["Alice"]  # from the first step
    assert again.pages[0].code == 1  # the same code as before
    assert await next_due(desk) == T0 + 34 * MINUTE  # alice's new report timeout, then bob


async def test_a_failed_delivery_pages_the_next_step_at_once(desk: Desk) -> None:
    _, started = await desk.open(T0)
    assert started is not None
    failed = await desk.report(started.pages[0], "failed", T0 + 30)
    assert failed.cause is Cause.FAILED_DELIVERY
    assert paged_names(failed) == ["Bob"]
    await settle_reports(desk, T0 + 40)
    # The rest of the timeline follows from bob's page: alice's second pass 2 minutes on.
    assert await next_due(desk) == T0 + 30 + 2 * MINUTE
    # A report for a page already settled changes nothing.
    assert (await desk.report(started.pages[0], "failed", T0 + 50)).pages == ()


async def test_accepted_or_unknown_reports_are_not_failures(desk: Desk) -> None:
    _, started = await desk.open(T0)
    assert started is not None
    unknown = await desk.report(started.pages[0], "unknown", T0 + 30)
    assert unknown.pages == ()
    assert await next_due(desk) == T0 + 5 * MINUTE  # bob on time, no report timeout


async def test_a_step_fails_over_only_when_none_of_its_pages_can_arrive(desk: Desk) -> None:
    _, started = await desk.open(T0, policy="pair")
    assert started is not None
    carol, dave = started.pages
    assert (carol.name, dave.name) == ("Carol", "Dave")
    assert (await desk.report(carol, "failed", T0 + 10)).pages == ()  # dave's may still arrive
    last = await desk.report(dave, "failed", T0 + 20)
    assert paged_names(last) == ["Bob"]


async def test_no_report_in_time_counts_as_failed(desk: Desk) -> None:
    await desk.open(T0)
    assert await next_due(desk) == T0 + 3 * MINUTE
    (late,) = await desk.tick(T0 + 3 * MINUTE)
    assert late.cause is Cause.REPORT_TIMEOUT
    assert paged_names(late) == ["Bob"]


async def test_a_failure_of_an_earlier_step_changes_nothing(desk: Desk) -> None:
    _, started = await desk.open(T0)
    assert started is not None
    await desk.report(started.pages[0], "delivered", T0 + 10)
    assert paged_names(await desk.tick(T0 + 5 * MINUTE)) == ["Bob"]
    stale = await desk.write(
        lambda c: c.execute("UPDATE incident_pages SET status = 'pending' WHERE name = 'Alice'")
    )
    assert stale.rowcount == 1
    assert (await desk.report(started.pages[0], "failed", T0 + 5 * MINUTE + 1)).pages == ()


async def test_asked_to_escalate_an_acknowledged_incident_pages_the_next_step(desk: Desk) -> None:
    opened, _ = await desk.open(T0)
    number = opened.incident.id
    await desk.call(incidents.acknowledge, number, "Alice", T0 + MINUTE)
    asked = await desk.call(escalation.escalate, number, T0 + 2 * MINUTE, Cause.ASKED, "Alice")
    assert paged_names(asked) == ["Bob"]
    assert asked.transition is not None
    assert asked.transition.change is Change.ESCALATED
    assert asked.incident is not None
    assert asked.incident.state is State.TRIGGERED
    assert await desk.read(lambda c: timers.get(c, incidents.ACK_TIMER, str(number))) is None


async def test_escalating_past_the_last_step_ends_paging(desk: Desk) -> None:
    opened, _ = await desk.open(T0, policy="pair")
    number = opened.incident.id
    first = await desk.call(escalation.escalate, number, T0 + 10, Cause.ASKED)
    assert paged_names(first) == ["Bob"]
    last = await desk.call(escalation.escalate, number, T0 + 20, Cause.ASKED)
    assert last.exhausted
    assert last.pages == ()
    assert (await desk.call(escalation.escalate, number, T0 + 30, Cause.ASKED)).exhausted is False


async def test_resolving_stops_everything(desk: Desk) -> None:
    opened, _ = await desk.open(T0)
    resolved = await desk.call(incidents.resolve_group, "critical", "db1", T0 + MINUTE)
    assert resolved is not None
    assert resolved.change is Change.RESOLVED
    assert await next_due(desk) is None
    assert await desk.call(incidents.resolve_group, "critical", "db1", T0 + MINUTE) is None
    asked = await desk.call(escalation.escalate, opened.incident.id, T0 + 90, Cause.ASKED)
    assert asked.pages == ()


async def test_a_restart_mid_escalation_pages_the_next_step_once(desk: Desk) -> None:
    await desk.open(T0)
    await settle_reports(desk, T0 + 10)
    await desk.store.close()
    desk.store = desk.reopen()  # the restart
    await desk.store.open()

    def killed(conn: Connection) -> None:
        fired = timers.fire_due(
            conn, T0 + 5 * MINUTE, 10, partial(escalation.on_timer, now=T0 + 5 * MINUTE)
        )
        assert paged_names(fired) == ["Bob"]
        raise RuntimeError("killed before the commit")

    # A firing that dies before its commit leaves the step due...
    with pytest.raises(RuntimeError, match="killed"):
        await desk.write(killed)
    # ...so it fires after it, exactly once.
    assert paged_names(await desk.tick(T0 + 5 * MINUTE)) == ["Bob"]
    assert await desk.tick(T0 + 5 * MINUTE) == []
    count = await desk.read(lambda c: c.execute("SELECT count(*) FROM incident_pages").fetchone())
    assert count[0] == 2


async def test_a_timeline_with_nobody_on_call_ends_at_once_and_says_why(desk: Desk) -> None:
    opened, _ = await desk.open(T0)
    empty = [NobodyOnCall(timedelta(), 0, 0, "primary"), NobodyOnCall(timedelta(), 1, 0, "backup")]
    started = await desk.call(escalation.start_escalation, opened.incident.id, empty, T0 + 1)
    assert started.nobody_on_call == ("primary", "backup")
    assert started.pages == ()
    assert started.exhausted
