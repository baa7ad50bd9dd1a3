"""One daemon among instances: its leases, the fence on late poll answers, the SQLite lock."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import Fault, FaultKind, GatewayState, SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.leadership import PROCESSOR_LEASE
from bridge.runtime.settings import load_settings
from bridge.store import Connection, StoreLock, StoreLockedError, instances

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
A = "15102110086"
TOKEN = "cluster-token"


def write(tmp_path: Path, replies: str = "2s") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""store:
  path: {tmp_path / "outbox.sqlite3"}
server:
  listen: 127.0.0.1:0
polling:
  replies: {replies}
  reports: 1h
  balance: 1h
inputs:
  am:
    type: alertmanager
    auth: {{bearer: {TOKEN}}}
contacts:
  alice: "{A}"
rules:
  - name: page
    match: {{kind: alert}}
    sms:
      to: [alice]
      repeat_interval: 0s
      template: "{{{{ status }}}} {{{{ labels.alertname }}}}"
  - name: replies
    match: {{kind: reply}}
    sms:
      to: [alice]
      template: "got {{{{ text }}}}"
"""
    )
    return path


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    settings = load_settings(write(tmp_path))
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    yield daemon
    await daemon.stop()


def gateway(daemon: Daemon) -> GatewayState:
    assert daemon.simulator is not None
    return daemon.simulator.state


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll a condition the code under test reaches by itself (a lease runs out by time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.02)


def steal(name: str) -> Callable[[Connection], None]:
    """Another instance takes the lease over (the next token, for an hour)."""

    def work(conn: Connection) -> None:
        conn.execute(
            """UPDATE leases SET holder = 'elsewhere', token = token + 1,
                      expires_at = expires_at + 3600 WHERE name = ?""",
            (name,),
        )

    return work


def give_back(name: str) -> Callable[[Connection], None]:
    def work(conn: Connection) -> None:
        conn.execute("UPDATE leases SET expires_at = 0 WHERE name = ?", (name,))

    return work


async def test_a_lone_daemon_holds_every_lease_from_its_start(daemon: Daemon) -> None:
    assert daemon.cluster.poll.held
    assert daemon.cluster.processor.held
    rows = await daemon.store.read(
        lambda conn: conn.execute("SELECT name, holder, token FROM leases ORDER BY name").fetchall()
    )
    ident = daemon.cluster.identity.id
    assert [tuple(row) for row in rows] == [
        (f"poller:{daemon.client.config.account}", ident, 1),
        (PROCESSOR_LEASE, ident, 1),
    ]
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as response:
        page = await response.text()
    assert f'smsbridge_instance_info{{instance="{ident}"}} 1.0' in page
    assert 'smsbridge_lease_held{lease="processor"} 1.0' in page


async def test_a_late_answer_after_a_takeover_is_never_stored(daemon: Daemon) -> None:
    """The gateway hands a reply out, its answer is held; meanwhile another instance takes the
    account's lease. The answer then arrives: the fence refuses it in the transaction that
    would keep it, so neither the raw answer nor the reply is stored or acted on."""
    state = gateway(daemon)
    await until(lambda: Action.GET_REPLY.value in daemon.poller.answered)
    state.inject_reply(A, "late-reply")
    state.add_fault(Fault(FaultKind.HOLD, action=Action.GET_REPLY, seconds=0.5))
    daemon.supervisor.trigger("poll-replies")
    account = state.account()
    await state.wait_for(lambda s: not account.replies and account.reads_in_flight == 1)
    await daemon.store.write(steal(daemon.cluster.poll.name))
    await until(lambda: daemon.poller.fenced == 1)

    def kept(conn: Connection) -> tuple[int, int]:
        raw = conn.execute(
            "SELECT count(*) FROM raw_polls WHERE CAST(body AS TEXT) LIKE '%late-reply%'"
        ).fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM inbox WHERE kind != 'input'").fetchone()[0]
        return int(raw), int(chunks)

    assert await daemon.store.read(kept) == (0, 0)
    await until(lambda: not daemon.cluster.poll.held)  # the next renewal finds it gone
    calls = state.calls[Action.GET_REPLY.value]
    daemon.supervisor.trigger("poll-replies")
    await asyncio.sleep(0.2)  # nothing to await: the point is that no call goes out
    assert state.calls[Action.GET_REPLY.value] == calls, "an instance without the lease polls"
    assert not [m for m in state.messages if "late-reply" in m.content]
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as response:
        assert "smsbridge_poll_answers_fenced_total 1.0" in await response.text()


async def test_an_answer_held_past_the_lease_is_abandoned(tmp_path: Path) -> None:
    """A gateway that holds its answer longer than the lease: the poller gives the call up at
    the lease's end (so another poller's read cannot overlap it) and stores nothing of it."""
    settings = load_settings(write(tmp_path, replies="1s"))
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    try:
        state = gateway(daemon)
        await until(lambda: Action.GET_REPLY.value in daemon.poller.answered)
        state.inject_reply(A, "held-reply")
        state.add_fault(Fault(FaultKind.HOLD, action=Action.GET_REPLY, seconds=3.0))
        daemon.supervisor.trigger("poll-replies")
        account = state.account()
        await state.wait_for(lambda s: not account.replies)
        await state.wait_for(lambda s: account.reads_in_flight == 0, timeout=6)

        def raw(conn: Connection) -> int:
            return int(
                conn.execute(
                    "SELECT count(*) FROM raw_polls WHERE CAST(body AS TEXT) LIKE '%held-reply%'"
                ).fetchone()[0]
            )

        assert await daemon.store.read(raw) == 0
        assert account.max_reads_in_flight == 1
    finally:
        await daemon.stop()


async def test_the_processor_runs_only_while_this_instance_leads(daemon: Daemon) -> None:
    """Without the processor's lease, webhooks are still accepted (and /readyz is ready), but
    nothing is processed; once the lease comes back, the waiting alert is sent."""
    await daemon.store.write(steal(PROCESSOR_LEASE))
    await until(lambda: not daemon.cluster.processor.held)
    alert = {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull"}, "fingerprint": "f1"}],
    }
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(daemon.url + "/hooks/am", json=alert, headers=headers) as response:
            assert response.status == 200, await response.text()
        async with http.get(daemon.url + "/readyz") as response:
            assert response.status == 200, await response.text()
    await asyncio.sleep(0.3)  # nothing to await: the point is that nothing is processed
    waiting = await daemon.store.read(
        lambda conn: conn.execute(
            "SELECT count(*) FROM inbox WHERE processed_at IS NULL"
        ).fetchone()[0]
    )
    assert waiting == 1
    assert not gateway(daemon).messages
    await daemon.store.write(give_back(PROCESSOR_LEASE))
    await gateway(daemon).wait_for(lambda s: len(s.messages) == 1, timeout=10)
    assert gateway(daemon).messages[0].content.endswith("firing DiskFull")
    assert daemon.cluster.processor.held
    assert daemon.cluster.processor.gains == 2


async def test_a_second_daemon_on_the_same_sqlite_file_refuses_to_start(
    daemon: Daemon, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        "run",
        "-c",
        str(tmp_path / "config.yaml"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 75
    assert "another smsbridge daemon runs on the store" in err.decode()
    assert str(tmp_path / "outbox.sqlite3") in err.decode()
    await daemon.stop()
    lock = StoreLock(tmp_path / "outbox.sqlite3")
    lock.acquire()  # free again once the first stopped
    lock.release()


def test_the_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    first, second = StoreLock(tmp_path / "s.sqlite3"), StoreLock(tmp_path / "s.sqlite3")
    first.acquire()
    with pytest.raises(StoreLockedError, match="one daemon per SQLite file"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def group(alerts: list[str], starts: str = "2026-01-01T00:00:00Z") -> dict[str, object]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname=~"Disk.*"}',
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name},
                "fingerprint": f"fp-{name}",
                "startsAt": starts,
            }
            for name in alerts
        ],
    }


async def test_peers_payloads_that_differ_page_each_alert_once(daemon: Daemon) -> None:
    """Two Alertmanager peers deliver one group, each with its own set of alerts: every alert
    pages once (per fingerprint, startsAt and status), not once per delivery; an alert that
    fires again (a new startsAt) is a new page."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        for payload in (
            group(["DiskA", "DiskB"]),
            group(["DiskA", "DiskB", "DiskC"]),
            group(["DiskB", "DiskC"]),
            group(["DiskA"], starts="2026-01-02T00:00:00Z"),
        ):
            async with http.post(daemon.url + "/hooks/am", json=payload, headers=headers) as r:
                assert r.status == 200, await r.text()
    state = gateway(daemon)
    await state.wait_for(lambda s: len(s.messages) >= 4)
    await daemon.processor.drain()
    await asyncio.sleep(0.2)  # nothing to await: a duplicate would be sent by now
    assert sorted(m.content.rsplit(" ", 1)[-1] for m in state.messages) == [
        "DiskA",
        "DiskA",
        "DiskB",
        "DiskC",
    ]


async def test_status_shows_the_instances_and_the_lease_holders(
    daemon: Daemon, tmp_path: Path
) -> None:
    async def status(*extra: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            SMSBRIDGE,
            "status",
            "-c",
            str(tmp_path / "config.yaml"),
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    ident = daemon.cluster.identity.id
    document = json.loads(await status("--json"))
    (instance,) = document["instances"]
    assert instance["id"] == ident
    assert instance["alive"] is True
    assert instance["listen"] == f"127.0.0.1:{daemon.port}"
    held = {lease["name"]: lease for lease in document["leases"]}
    assert set(held) == {PROCESSOR_LEASE, daemon.cluster.poll.name}
    assert all(lease["holder"] == ident and lease["held"] for lease in held.values())
    text = await status()
    assert f"  processor  held by {ident} for " in text
    assert f"  {ident}  alive  " in text
    await daemon.stop()  # a clean stop hands the leases on and says the instance stopped
    document = json.loads(await status("--json"))
    assert document["instances"][0]["stopped_at"] is not None
    assert not any(lease["held"] for lease in document["leases"])


async def test_jobs_a_dead_instance_claimed_are_taken_over(daemon: Daemon) -> None:
    """A job left 'sending' by an instance whose heartbeat ran out is settled by another (and
    resent: paging accepts a duplicate over a miss); one a live instance is sending is not."""

    def plant(conn: Connection) -> None:
        for instance, ttl in (("ghost", -1.0), ("peer", 3600.0)):
            instances.register(conn, instance, "elsewhere", 1, "10.0.0.9:8080", ttl)
        for instance in ("ghost", "peer"):
            conn.execute(
                """INSERT INTO jobs (output, recipient, text, state, next_at, created_at,
                                     updated_at, claimed_by)
                   VALUES ('sms', ?, ?, 'sending', 0, 0, 0, ?)""",
                (A, f"claimed by {instance}", instance),
            )

    await daemon.store.write(plant)
    assert await daemon.cluster.heartbeat.beat() == 1
    await gateway(daemon).wait_for(lambda s: len(s.messages) == 1, timeout=10)
    assert gateway(daemon).messages[0].content.endswith("claimed by ghost")
    states = await daemon.store.read(
        lambda conn: dict(conn.execute("SELECT claimed_by, state FROM jobs").fetchall())
    )
    assert states["peer"] == "sending", "a live instance's claim is its own"
    assert await daemon.cluster.heartbeat.beat() == 0, "taken over once"
