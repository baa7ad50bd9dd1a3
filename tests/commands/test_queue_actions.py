"""`smsbridge retry`, `cancel` and `release` beside a running daemon and its simulator: a failed
message sent again, a held one cancelled for good, another released once the balance is back;
an action that does not apply changes nothing and exits 2."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.events import Event, EventKind, Intent
from bridge.outbox import jobs
from bridge.plugin import OutcomeKind
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import Fault, FaultKind
from bridge.runtime.daemon import Daemon
from bridge.runtime.wakeups import CHANGES, JOBS
from bridge.store import Connection
from bridge.store.postgres import PostgresStore
from bridge.testing import DaemonFactory
from tests.commands.test_history import ALICE, smsbridge, until

CONFIG = f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts: {{alice: "{ALICE}"}}
rules:
  - name: info
    match: {{kind: alert}}
    sms: {{to: [alice], template: "{{{{ labels.alertname }}}}", retry_ambiguous: false}}
"""


async def alert(daemon: Daemon, name: str) -> None:
    event = Event(kind=EventKind.ALERT, source="am", labels={"alertname": name}, fingerprint=name)
    await daemon.processor.run_events([event])


async def job(daemon: Daemon, text: str) -> sqlite3.Row:
    def read(conn: sqlite3.Connection) -> sqlite3.Row:
        row: sqlite3.Row = conn.execute("SELECT * FROM jobs WHERE text = ?", (text,)).fetchone()
        return row

    return await daemon.store.read(read)


async def reaches(daemon: Daemon, text: str, state: str, code: str | None = None) -> None:
    async def check() -> bool:
        row = await job(daemon, text)
        return row is not None and row["state"] == state and (code is None or row["code"] == code)

    await until(check)


async def test_retry_cancel_and_release_beside_a_running_daemon(
    smsbridge_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = await smsbridge_daemon(CONFIG)
    assert daemon.simulator is not None
    state = daemon.simulator.state
    config = str(daemon.settings.path)

    # A permanent refusal (-4): the message fails; `retry` sends it again.
    state.add_fault(Fault(FaultKind.CODE, code=-4, action=Action.SEND_ONCE))
    await alert(daemon, "Refused")
    await reaches(daemon, "Refused", jobs.JobState.FAILED)
    failed = (await job(daemon, "Refused"))["id"]
    code, out, err = await smsbridge("retry", "-c", config, str(failed))
    assert (code, err) == (0, ""), err
    assert out == f"message {failed} (failed) queued again\n"
    await reaches(daemon, "Refused", jobs.JobState.SENT)
    assert [m.content for m in state.messages if m.mobile == ALICE] == ["Refused"]

    # No balance: both messages are held until a top-up.
    state.set_balance(remain=Decimal(0))
    await alert(daemon, "Dropped")
    await alert(daemon, "Released")
    await reaches(daemon, "Dropped", jobs.JobState.PENDING, "hold")
    await reaches(daemon, "Released", jobs.JobState.PENDING, "hold")
    dropped = (await job(daemon, "Dropped"))["id"]
    released = (await job(daemon, "Released"))["id"]

    code, out, err = await smsbridge("cancel", "-c", config, str(dropped), "--json")
    assert (code, err) == (0, ""), err
    assert '"ok": true' in out
    row = await job(daemon, "Dropped")
    assert (row["state"], row["code"]) == ("failed", "cancelled")
    assert row["reason"] == "cancelled by hand"

    state.set_balance(remain=Decimal(100))
    code, out, err = await smsbridge("release", "-c", config, str(released))
    assert (code, err) == (0, ""), err
    # The hold was for 5 minutes: only the release sends it now.
    await reaches(daemon, "Released", jobs.JobState.SENT)
    assert [m.content for m in state.messages] == ["Refused", "Released"]

    # Actions that do not apply: refused before any change, exit 2, the reason on stderr.
    for args, why in (
        (("cancel", str(released)), f"message {released} is sent"),
        (("release", str(failed)), f"message {failed} is not held"),
        (("retry", str(failed)), f"message {failed} is sent: only failed, unknown or waiting"),
        (("retry", "999"), "no message 999"),
    ):
        code, out, err = await smsbridge(args[0], "-c", config, args[1])
        assert (code, out) == (2, ""), (args, err)
        assert why in err
    row = await job(daemon, "Dropped")
    assert row["state"] == "failed"
    assert [m.content for m in state.messages] == ["Refused", "Released"]


def test_an_action_on_a_missing_store_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{path: {tmp_path / 'none.sqlite3'}}}\n")
    assert main(["retry", "-c", str(config), "1"]) == 78
    assert "none.sqlite3: no such file: nothing was ever queued there" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


async def test_an_action_on_postgresql_wakes_the_daemons_senders_and_pages(
    pg_url: str, tmp_path: Path
) -> None:
    """Daemons on another host hear of a release at once (NOTIFY), not at their next look."""
    listener = PostgresStore(pg_url)
    await listener.open()

    def held(conn: Connection) -> int:
        event = Event(kind=EventKind.ALERT, source="am", labels={"alertname": "Held"})
        intent = Intent("sms", ALICE, "held", "info", event)
        found = jobs.add_job(conn, intent, None, 1.0)
        jobs.mark_held(conn, found, 1.0, 10**10, "balance too low", OutcomeKind.HOLD)
        return found

    job_id = await listener.write(held)
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{url: '{pg_url}'}}\n")
    stream = listener.notifications(JOBS, CHANGES)
    heard: list[tuple[str, str]] = []
    try:
        # LISTEN is in place once the stream's first notice arrives: prime it.
        first = asyncio.ensure_future(anext(stream))
        while not first.done():
            await listener.notify(CHANGES, "primed")
            await asyncio.wait({first}, timeout=0.05)
        code, out, err = await smsbridge("release", "-c", str(config), str(job_id))
        assert (code, out, err) == (0, f"message {job_id} released: it is due now\n", "")
        async with asyncio.timeout(10):
            async for notice in stream:
                heard.append((notice.channel, notice.payload))
                if (JOBS, "sms") in heard and (CHANGES, "") in heard:
                    break
    finally:
        await stream.aclose()
        await listener.close()
    assert (JOBS, "sms") in heard
