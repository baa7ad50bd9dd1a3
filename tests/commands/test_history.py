"""`smsbridge messages`, `queue` and `incidents` beside a real daemon and its simulator: what was
sent and delivered, what is held and why, which incidents are open; numbers masked, control
characters escaped, the store never written."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.commands.history.views import STATES
from bridge.events import Event, EventKind
from bridge.plugins.c123.keyfile import write_key
from bridge.plugins.c123.simulator import DEFAULT_ACCOUNT, DEFAULT_AUTHKEY, Simulator
from bridge.runtime.daemon import Daemon
from bridge.store import Connection, Dialect, migrations
from bridge.testing import DaemonFactory, post_json

ALICE, BOB = "15102110086", "15102110087"
SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
ESCAPE = "Disk\x1b[31mFull"  # a label that would recolour a terminal printed raw

CONFIG = f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts:
  alice: {{number: "{ALICE}", name: Alice}}
  bob: {{number: "{BOB}", name: Bob}}
oncall:
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: 1h}}
      report_timeout: 1h
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
  - name: info
    match: {{kind: alert}}
    sms: {{to: [bob], template: "{{{{ labels.alertname }}}} on {{{{ labels.host }}}}"}}
"""


def notification(alertname: str, severity: str, fingerprint: str) -> dict[str, Any]:
    labels = {"alertname": alertname, "severity": severity, "host": "db1"}
    return {
        "version": "4",
        "groupKey": f"{{}}:{{alertname={alertname!r}}}",
        "status": "firing",
        "receiver": "sms",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {},
                "startsAt": "2026-11-25T00:00:00Z",
                "endsAt": "",
                "fingerprint": fingerprint,
            }
        ],
    }


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll a condition that no event announces (the store's rows) until it holds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - rows announce nothing: polling it is
            await asyncio.sleep(0.02)


async def smsbridge(*args: str) -> tuple[int, str, str]:
    """The installed command, run without blocking the daemon in this process."""
    process = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def files(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


async def delivered(daemon: Daemon, count: int) -> bool:
    def read(conn: Connection) -> int:
        row = conn.execute("SELECT COUNT(*) AS n FROM jobs WHERE delivery = 'delivered'")
        return int(row.fetchone()["n"])

    assert daemon.poller is not None
    await daemon.poller.poll_reports()
    await daemon.processor.drain()
    return await daemon.store.read(read) >= count


async def test_messages_and_incidents_beside_a_running_daemon(
    backend: tuple[Dialect, str], smsbridge_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """Two alerts page alice and text bob; the delivery reports come back; the installed command
    lists both messages (masked, escaped), filters them, and shows the open incident. On each
    backend (the database outlives the daemon: `backend` comes first)."""
    url = backend[1]
    daemon = await smsbridge_daemon(CONFIG + (f'store: {{url: "{url}"}}\n' if url else ""))
    assert daemon.simulator is not None
    state = daemon.simulator.state
    status, _ = await post_json(daemon, "/hooks/am", notification("DiskFull", "critical", "a1"))
    assert status == 200
    status, _ = await post_json(daemon, "/hooks/am", notification(ESCAPE, "info", "b2"))
    assert status == 200
    await state.wait_for(lambda s: len(s.messages) >= 2)
    await until(lambda: delivered(daemon, 2))
    config = daemon.settings.path
    assert config is not None
    store_dir = daemon.settings.config.store.path.parent
    before = files(store_dir)

    code, out, err = await smsbridge("messages", "-c", str(config), "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["next_before"] is None
    first, second = sorted(document["messages"], key=lambda m: m["id"])
    assert first["event"] == "DiskFull"
    assert first["rule"] == "critical"
    assert first["to"] == "151****0086"
    assert first["text"].startswith("[#1] DiskFull")
    assert first["state"] == "delivered"
    assert first["carrier_code"] == "DELIVRD"
    assert first["msgid"]
    assert first["segments"] == 2  # as billed: the page text is 2 segments long
    assert first["cost"] == "0.20"
    assert second["event"] == ESCAPE  # JSON keeps the value; the text is \u001b, never raw
    assert "\x1b" not in out
    assert second["to"] == "151****0087"
    assert ALICE not in out
    assert BOB not in out

    code, out, err = await smsbridge("messages", "-c", str(config), "--to", "bob")
    assert (code, err) == (0, "")
    assert "\x1b" not in out
    assert "Disk\\x1b[31mFull" in out  # shown escaped, in the event and the text
    assert "151****0087" in out
    assert "151****0086" not in out
    assert "-> delivered (DELIVRD)" in out

    code, out, _ = await smsbridge("messages", "-c", str(config), "--to", ALICE, "--limit", "1")
    assert code == 0
    assert "[#1] DiskFull" in out
    assert "more: --before" in out
    code, out, _ = await smsbridge("messages", "-c", str(config), "--state", "failed,held")
    assert (code, out) == (0, "no messages\n")
    code, out, _ = await smsbridge("messages", "-c", str(config), "--since", "1h", "--json")
    assert len(json.loads(out)["messages"]) == 2

    code, out, err = await smsbridge("incidents", "-c", str(config), "--json")
    assert (code, err) == (0, "")
    (incident,) = json.loads(out)["incidents"]
    assert incident["id"] == 1
    assert incident["state"] == "triggered"
    assert incident["pages"] == 1
    assert incident["paged"] == ["Alice"]
    code, out, _ = await smsbridge("incidents", "-c", str(config))
    assert out.splitlines()[1].split()[:2] == ["#1", "triggered"]
    assert files(store_dir) == before  # nothing created beside the daemon's files


async def test_queue_shows_held_pages_and_the_paused_account(
    smsbridge_daemon: DaemonFactory, simulator: Simulator, tmp_path: Path
) -> None:
    """A locked account: both pages are held with the pause as their reason, and the queue says
    so; the history config needs no key file (the daemon's secret) and no daemon environment."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, DEFAULT_AUTHKEY)
    simulator.state.set_flags(DEFAULT_ACCOUNT, account_locked=True)
    store = tmp_path / "smsbridge.sqlite3"
    gateway = f"""
store: {{path: {store}}}
gateway:
  base_url: {simulator.url}
  account: {DEFAULT_ACCOUNT}
  authkey_file: {{file}}
  rate_limit: null
  probe_interval: 1h
"""
    daemon = await smsbridge_daemon(
        gateway.replace("{file}", str(key_file))
        + f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts: {{alice: "{ALICE}", bob: "{BOB}"}}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice, bob], template: "{{{{ labels.alertname }}}}"}}
"""
    )
    await daemon.processor.run_events(
        [Event(kind=EventKind.ALERT, source="am", labels={"alertname": "Db"}, fingerprint="x")]
    )

    async def held() -> bool:
        def read(conn: Connection) -> int:
            row = conn.execute("SELECT COUNT(*) AS n FROM jobs WHERE code = 'pause_account'")
            marked = conn.execute("SELECT 1 FROM settings WHERE key LIKE 'c123.%.pause'")
            return int(row.fetchone()["n"]) if marked.fetchone() else 0

        return await daemon.store.read(read) == 2

    await until(held)
    # What an operator's shell has: no key file, none of the daemon's environment.
    config = tmp_path / "history.yaml"
    config.write_text(
        gateway.replace("{file}", str(tmp_path / "unreadable-key"))
        + 'server: {listen: "${ONLY_THE_DAEMON_HAS_IT}"}\n'
        + f'contacts: {{alice: "{ALICE}"}}\n'
    )
    code, out, err = await smsbridge("queue", "-c", str(config), "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    (pause,) = document["paused_accounts"]
    assert pause["account"] == DEFAULT_ACCOUNT
    assert pause["reason"] == "account_locked"
    waiting = document["messages"]
    assert [w["state"] for w in waiting] == ["held", "held"]
    assert {w["hold"] for w in waiting} == {"pause_account"}
    assert {w["to"] for w in waiting} == {"151****0086", "151****0087"}
    assert all("account paused (account_locked)" in w["reason"] for w in waiting)
    code, out, _ = await smsbridge("queue", "-c", str(config))
    assert out.startswith(f"account {DEFAULT_ACCOUNT} paused since ")
    assert "pause_account: " in out
    assert "or when released" in out
    code, out, _ = await smsbridge(
        "messages", "-c", str(config), "--state", "held", "--to", "alice"
    )
    assert code == 0
    assert "151****0086" in out
    assert "151****0087" not in out


def test_main_reads_a_stopped_daemons_store_without_creating_files(tmp_path: Path) -> None:
    """With no daemon the store has no -wal or -shm: reading it creates neither, and a missing
    store is an environment problem (78), not a new empty file."""
    store = tmp_path / "s.sqlite3"
    conn = sqlite3.connect(store, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrations.upgrade(conn)
    conn.execute(
        """INSERT INTO jobs (output, recipient, text, state, next_at, created_at, updated_at,
                             code, reason)
           VALUES ('sms', ?, 'hi', 'pending', 4e9, 1, 1, 'hold', 'budget spent')""",
        (ALICE,),
    )
    conn.close()
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{path: {store}}}\n")
    before = files(tmp_path)
    assert main(["queue", "-c", str(config)]) == 0
    assert main(["messages", "-c", str(config), "--state", "held"]) == 0
    assert main(["incidents", "-c", str(config), "--json"]) == 0
    assert files(tmp_path) == before
    config.write_text(f"store: {{path: {tmp_path / 'missing.sqlite3'}}}\n")
    assert main(["messages", "-c", str(config)]) == 78
    assert files(tmp_path) == before


def test_an_old_store_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(store, isolation_level=None)
    migrations.upgrade(conn, migrations.MIGRATIONS[:3])
    conn.close()
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{path: {store}}}\n")
    assert main(["incidents", "-c", str(config)]) == 78
    assert "smsbridge migrate" in capsys.readouterr().err


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{path: {tmp_path / 's.sqlite3'}}}\n")
    assert main(["messages", "-c", str(config), "--to", "nobody"]) == 2
    assert "neither a contact in the config nor a number" in capsys.readouterr().err
    for bad in (["--state", "lost"], ["--since", "soon"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as exited:
            main(["messages", *bad])
        assert exited.value.code == 2


def test_pages_use_an_index_range() -> None:
    """The listings' queries use the indexes step 5 adds, not a scan of every job."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrations.upgrade(conn)
    plans = {
        "queue": "SELECT * FROM jobs WHERE state IN ('pending', 'sending') AND id > 0 "
        "ORDER BY id LIMIT 50",
        "since": "SELECT * FROM jobs WHERE id >= coalesce((SELECT id FROM jobs WHERE "
        "created_at >= 5 ORDER BY created_at LIMIT 1), -1) AND created_at >= 5 "
        "ORDER BY id DESC LIMIT 50",
    }
    for name, sql in plans.items():
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SCAN" not in plan, (name, plan)
    assert set(STATES) >= {"queued", "held", "sent", "delivered", "failed"}
