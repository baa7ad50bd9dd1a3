"""The console's pages on a real daemon: messages with delivery states, a message's timeline,
incidents acknowledged and closed through paging, the queue's actions, the dry run, the
redacted configuration, the gateway, and the simulated phones."""

from __future__ import annotations

import json
import re
import time

import aiohttp

from bridge.outbox import jobs
from bridge.plugins.c123.simulator import DEFAULT_ACCOUNT, Simulator
from bridge.runtime.daemon import Daemon
from bridge.store import Connection
from bridge.testing import DaemonFactory, post_json
from tests.console.conftest import base
from tests.console.helpers import (
    PASSWORDS,
    SECRET,
    A,
    B,
    client,
    config,
    csrf_of,
    login,
    notification,
    rows,
    until,
)


async def page(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.text()


async def alert(daemon: Daemon, severity: str = "critical", fingerprint: str = "f1") -> None:
    status, _ = await post_json(daemon, "/hooks/am", notification("firing", fingerprint, severity))
    assert status == 200


async def delivered(daemon: Daemon, http: aiohttp.ClientSession) -> str:
    """The messages page once the first message shows as delivered."""
    found = ""

    async def check() -> bool:
        nonlocal found
        await daemon.poller.poll_reports()  # the config polls hourly: ask the simulator now
        found = await page(http, f"{base(daemon)}/messages")
        return "state-delivered" in found

    await until(check)
    return found


async def test_an_alert_shows_in_messages_with_its_delivery_state_masked(
    daemon: Daemon, operator: aiohttp.ClientSession
) -> None:
    await alert(daemon)
    html = await delivered(daemon, operator)
    assert "151****0086" in html
    assert A not in html  # the number itself never reaches the page
    assert "DiskFull" in html
    assert "critical" in html  # the rule
    (job_id,) = (await rows(daemon, "SELECT id FROM jobs"))[0]
    detail = await page(operator, f"{base(daemon)}/messages/{job_id}")
    assert "delivery report: delivered" in detail
    assert "msgid" in detail
    assert A not in detail
    assert re.search(r'href="/console/incidents/1"', detail)
    filtered = await page(operator, f"{base(daemon)}/messages?state=failed")
    assert "No messages." in filtered
    by_name = await page(operator, f"{base(daemon)}/messages?to=alice&state=delivered")
    assert f'data-id="{job_id}"' in by_name
    refused = await page(operator, f"{base(daemon)}/messages?to=nobody&since=soon")
    assert "neither a contact nor a number" in refused
    assert "expected a duration" in refused


async def test_acknowledge_and_close_an_incident_through_paging(
    daemon: Daemon, operator: aiohttp.ClientSession
) -> None:
    await alert(daemon)
    await until(lambda: _has(daemon, "SELECT 1 FROM incident_pages"))
    html = await page(operator, f"{base(daemon)}/incidents/1")
    assert "triggered" in html
    token = csrf_of(html)
    async with operator.post(f"{base(daemon)}/incidents/1/ack", data={"csrf": token}) as answer:
        assert answer.url.path == "/console/incidents/1"
        text = await answer.text()
    assert "acknowledged #1 DiskFull" in text  # what paging answered, shown once
    acked = await rows(daemon, "SELECT state, acked_by FROM incidents")
    assert acked == [("acknowledged", "alice")]
    async with operator.post(f"{base(daemon)}/incidents/1/close", data={"csrf": token}) as answer:
        assert "resolved #1" in await answer.text()
    assert await rows(daemon, "SELECT state, resolved_by FROM incidents") == [("resolved", "alice")]
    assert await rows(
        daemon, "SELECT person, action, target FROM console_audit WHERE action != 'login'"
    ) == [
        ("alice", "acknowledge", "incident #1"),
        ("alice", "close", "incident #1"),
    ]
    listing = await page(operator, f"{base(daemon)}/incidents")
    assert "No open incidents." in listing
    assert "Recently resolved" in listing


async def _has(daemon: Daemon, sql: str) -> bool:
    return bool(await rows(daemon, sql))


async def test_queue_actions_cancel_release_and_retry(
    daemon: Daemon, operator: aiohttp.ClientSession
) -> None:
    # Jobs for another output stay put: nothing sends them while the test acts on them.
    held, waiting = await daemon.store.write(_two_jobs)
    html = await page(operator, f"{base(daemon)}/queue")
    assert f'data-id="{held}"' in html
    assert "hold: balance too low" in html
    token = csrf_of(html)
    for verb, job, expected in (
        ("release", held, f"message {held} released: it is due now"),
        ("release", waiting, f"message {waiting} is not held"),
        ("cancel", waiting, f"message {waiting} cancelled: it will not be sent"),
        ("cancel", waiting, "only a waiting one can be cancelled"),
        ("retry", waiting, f"message {waiting} (failed) queued again"),
    ):
        async with operator.post(
            f"{base(daemon)}/jobs/{job}/{verb}?back=queue", data={"csrf": token}
        ) as answer:
            assert answer.url.path == "/console/queue"
            assert expected in await answer.text()
    assert await rows(
        daemon, "SELECT state, attempts FROM jobs WHERE state = 'pending' AND code = ''"
    ) == [("pending", 0)]
    actions = await rows(daemon, "SELECT action, target FROM console_audit WHERE action != 'login'")
    assert [action for action, _ in actions] == ["release", "release", "cancel", "cancel", "retry"]


def _two_jobs(conn: Connection) -> tuple[int, int]:
    from bridge.events import Event, EventKind, Intent
    from bridge.plugin import OutcomeKind

    event = Event(EventKind.ALERT, "test", labels={"alertname": "Held"})
    ids = []
    for recipient in (A, B):
        intent = Intent("elsewhere", recipient, "held text", "manual", event)
        ids.append(jobs.add_job(conn, intent, None, 1.0))
    later = time.time() + 86400
    jobs.mark_held(conn, ids[0], 1.0, later, "balance too low", OutcomeKind.HOLD)
    conn.execute("UPDATE jobs SET next_at = ? WHERE id = ?", (later, ids[1]))
    return ids[0], ids[1]


async def test_rules_dry_run_shows_recipients_and_timeline_and_sends_nothing(
    daemon: Daemon, viewer: aiohttp.ClientSession
) -> None:
    html = await page(viewer, f"{base(daemon)}/rules")
    token = csrf_of(html)
    event = {
        "kind": "alert",
        "source": "am",
        "labels": {"alertname": "DiskFull", "severity": "critical"},
        "text": "disk full",
        "fingerprint": "x",
    }
    form = {"csrf": token, "event": json.dumps(event), "at": "2026-11-25T03:00"}
    async with viewer.post(f"{base(daemon)}/rules", data=form) as answer:
        assert answer.status == 200
        report = await answer.text()
    assert "critical</strong>:\nmatches" in report or "critical</strong>: matches" in report
    assert "Page through policy ops" in report
    assert "Alice (151****0086, alice)" in report
    assert "Bob (151****0087, bob)" in report
    assert A not in report
    assert B not in report
    assert await rows(daemon, "SELECT count(*) FROM jobs") == [(0,)]
    form["event"] = "{not json"
    async with viewer.post(f"{base(daemon)}/rules", data=form) as answer:
        assert answer.status == 400
        assert "cannot read the event" in await answer.text()


async def test_configuration_is_redacted(daemon: Daemon, viewer: aiohttp.ClientSession) -> None:
    html = await page(viewer, f"{base(daemon)}/config")
    assert SECRET not in html
    assert "scrypt$" not in html
    assert A not in html
    assert "151****0086" in html
    assert "**********" in html
    assert "live_clients" in html


async def test_gateway_shows_budget_and_polls(
    daemon: Daemon, viewer: aiohttp.ClientSession
) -> None:
    await daemon.poller.poll_balance()
    html = await page(viewer, f"{base(daemon)}/gateway")
    assert "segment(s) used today (no daily budget set)" in html
    assert re.search(r"<td>getBalance</td><td>\d{4}-\d\d-\d\d", html)
    assert "<polyline" in html
    assert f"<td>{daemon.cluster.identity.id}</td><td>alive</td>" in html
    assert f"<td>processor</td><td>held by {daemon.cluster.identity.id} for" in html


async def test_any_instance_shows_the_polls_and_who_holds_each_lease(
    pg_url: str, simulator: Simulator, smsbridge_daemon: DaemonFactory
) -> None:
    """Two instances on one database: the one that does not poll shows the other's polls (from
    the stored answers), both instances, and who holds each lease, as `smsbridge status` does."""
    text = config(store_url=pg_url, gateway=simulator.url)
    pair = [await smsbridge_daemon(text), await smsbridge_daemon(text)]
    leader = next(d for d in pair if d.cluster.poll.held)
    other = next(d for d in pair if d is not leader)
    for poll in (
        leader.poller.poll_replies,
        leader.poller.poll_reports,
        leader.poller.poll_balance,
    ):
        await poll()
    async with client() as http:
        assert await login(http, base(other), "victor", PASSWORDS["victor"]) == 303
        html = await page(http, f"{base(other)}/gateway")
    for action in ("getReply", "getSendState", "getBalance"):
        assert re.search(rf"<td>{action}</td><td>\d{{4}}-\d\d-\d\d \d\d:\d\d", html), action
    assert "none stored" not in html
    for daemon in pair:
        assert f"<td>{daemon.cluster.identity.id}</td><td>alive</td>" in html
    holder = f"held by {leader.cluster.identity.id} for"
    assert re.search(rf"<td>poller:{DEFAULT_ACCOUNT}</td><td>{holder}", html)
    processor = next(d for d in pair if d.cluster.processor.held)
    assert f"<td>processor</td><td>held by {processor.cluster.identity.id} for" in html


async def test_replying_from_a_simulated_phone_acknowledges(
    daemon: Daemon, operator: aiohttp.ClientSession
) -> None:
    await alert(daemon)
    assert daemon.simulator is not None
    state = daemon.simulator.state
    await until(lambda: _sent_to(state, A))
    html = await page(operator, f"{base(daemon)}/phones")
    assert "Alice" in html
    assert "DiskFull" in html
    assert A not in html
    key = re.search(r'data-phone="([0-9a-f]+)">\s*<h2>Alice', html)
    assert key is not None
    form = {"csrf": csrf_of(html), "phone": key.group(1), "text": "ack"}
    async with operator.post(f"{base(daemon)}/phones", data=form) as answer:
        assert "replied from 151****0086" in await answer.text()
    await until(lambda: _has(daemon, "SELECT 1 FROM incidents WHERE state = 'acknowledged'"))
    assert await rows(daemon, "SELECT acked_by FROM incidents") == [("Alice",)]


async def _sent_to(state: object, mobile: str) -> bool:
    return any(m.mobile == mobile for m in state.messages)  # type: ignore[attr-defined]


async def test_a_failed_message_shows_why_and_only_operators_get_retry(
    daemon: Daemon, operator: aiohttp.ClientSession, viewer: aiohttp.ClientSession
) -> None:
    def failed(conn: Connection) -> int:
        from bridge.events import Event, EventKind, Intent

        event = Event(EventKind.ALERT, "test", labels={"alertname": "Gone"})
        job = jobs.add_job(conn, Intent("elsewhere", A, "text", "manual", event), None, 1.0)
        jobs.mark_final(conn, job, jobs.JobState.FAILED, 2.0, "the number is invalid", "-5")
        return job

    job = await daemon.store.write(failed)
    html = await page(operator, f"{base(daemon)}/messages/{job}")
    assert "<strong>failed</strong>" in html
    assert "the number is invalid" in html
    assert f'action="/console/jobs/{job}/retry"' in html
    assert "/cancel" not in html  # settled: too late to cancel
    assert f'action="/console/jobs/{job}/retry"' not in await page(
        viewer, f"{base(daemon)}/messages/{job}"
    )
