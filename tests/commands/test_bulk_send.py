"""`smsbridge send --csv` on a real simulator, as a subprocess: the fewest calls, a crash
mid-call resumed without resending what may have gone out, holds and refusals before any call,
and a run beside a running daemon that sends each row once."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

from bridge.outbox import jobs
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
)
from bridge.store import SqliteStore
from bridge.testing import DaemonFactory
from tests.commands.test_history import SMSBRIDGE, smsbridge


def gateway(simulator: Simulator, store: Path, extra: str = "") -> str:
    return f"""
store: {{path: {store}}}
gateway:
  base_url: {simulator.url}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
  timeout: {{total: 1s}}
{extra}"""


def number(index: int) -> str:
    return f"1510000{index:04d}"


def csv_file(path: Path, count: int, header: str = "number,text") -> Path:
    lines = [header, *(f"{number(i)},message {i}" for i in range(count))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def states(store: Path) -> dict[str, int]:
    conn = sqlite3.connect(store)
    try:
        rows = conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return dict(rows)
    finally:
        conn.close()


async def test_a_crash_mid_call_resumes_without_resending(
    simulator: Simulator, tmp_path: Path
) -> None:
    """250 own texts are three sendBatch calls. The sender dies while the first is under way:
    a second run settles that call's 100 rows unknown (they may have gone out) and sends the
    150 never tried; no phone gets a message twice."""
    store = tmp_path / "s.sqlite3"
    config = tmp_path / "c.yaml"
    config.write_text(gateway(simulator, store, "dispatch: {concurrency: 1}\n"))
    rows = csv_file(tmp_path / "rows.csv", 250)
    code, out, err = await smsbridge("send", "-c", str(config), "--csv", str(rows), "--dry-run")
    assert (code, err) == (0, ""), err
    assert "250 to send in 3 sendBatch: 250 segment(s), estimated cost 25.00" in out
    assert states(store) == {}  # a dry run queues nothing

    simulator.state.add_fault(Fault(FaultKind.DELAY, seconds=0.8, action=Action.SEND_BATCH))
    first = await asyncio.create_subprocess_exec(
        SMSBRIDGE, "send", "-c", str(config), "--csv", str(rows), "--yes",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await simulator.state.wait_for(lambda s: s.calls["sendBatch"] >= 1)
    os.kill(first.pid, signal.SIGKILL)
    await first.wait()
    # The sender claims one call's worth at a time: only the call in flight is ambiguous.
    assert states(store) == {"sending": 100, "pending": 150}

    code, out, err = await smsbridge("send", "-c", str(config), "--csv", str(rows), "--json")
    assert code == 1, err
    document = json.loads(out)
    assert document["queued_before"] == 250
    assert document["to_send"] == 0
    result = document["result"]
    assert (result["sent"], result["unknown"], result["failed"]) == (150, 100, 0)
    assert all("not resent" in f["reason"] for f in result["failures"])
    unknown_rows = {f["row"] for f in result["failures"]}
    assert len(unknown_rows) == 100
    per_number: dict[str, int] = {}
    for message in simulator.state.messages:
        per_number[message.mobile] = per_number.get(message.mobile, 0) + 1
    assert set(per_number.values()) == {1}
    # The killed call's rows were never sent again; every other row was sent once.
    never_again = {number(row - 2) for row in unknown_rows}
    assert {number(i) for i in range(250)} - never_again <= set(per_number)
    assert simulator.state.calls["sendBatch"] == 3  # the killed call and two more, no repeat
    assert states(store) == {"sent": 150, "unknown": 100}

    code, out, _ = await smsbridge("send", "-c", str(config), "--csv", str(rows))
    assert code == 1
    assert "250 of them queued by an earlier run of this file" in out
    assert simulator.state.calls["sendBatch"] == 3


async def test_templates_go_by_send_param_and_refusals_send_nothing(
    simulator: Simulator, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite3"
    config = tmp_path / "c.yaml"
    config.write_text(gateway(simulator, store, "bulk: {confirm_above: 1}\n"))
    rows = tmp_path / "rows.csv"
    # GBK, as Chinese Excel writes it; p2 is unused by the template and that is fine.
    body = "number,p1,p2\n" + "".join(f"{number(i)},王{i},x\n" for i in range(30))
    rows.write_bytes(body.encode("gbk"))
    template = "尊敬的{p1}，您好"

    # 30 SMS at 0.10 is above confirm_above 1: without a terminal it needs --yes.
    code, out, err = await smsbridge("send", "-c", str(config), "--csv", str(rows),
                                     "--template", template)  # fmt: skip
    assert code == 2
    assert "run again with --yes" in err
    assert states(store) == {}

    code, out, err = await smsbridge(
        "send", "-c", str(config), "--csv", str(rows), "--template", template, "--yes"
    )
    assert (code, err) == (0, ""), err
    assert "(gbk): 30 rows, all valid" in out
    assert "30 to send in 1 sendParam" in out
    assert "sent 30 of 30: 30 segment(s) billed, cost 3.00" in out
    assert simulator.state.calls["sendParam"] == 1
    texts = {m.mobile: m.content for m in simulator.state.messages}
    assert texts[number(7)].startswith("尊敬的王7，您好")

    # Today's budget is counted with what was sent: another run would pass it.
    config.write_text(gateway(simulator, store, "storm: {daily_segment_budget: 40}\n"))
    code, out, _ = await smsbridge(
        "send", "-c", str(config), "--csv", str(rows), "--template", "再见{p1}", "--yes"
    )
    assert code == 1
    assert "held: 30 segment(s) would pass today's budget" in out
    assert states(store) == {"sent": 30}


async def test_a_paused_account_holds_the_run_without_a_send_call(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.state.set_flags(DEFAULT_ACCOUNT, account_locked=True)
    store = tmp_path / "s.sqlite3"
    config = tmp_path / "c.yaml"
    config.write_text(gateway(simulator, store))
    rows = csv_file(tmp_path / "rows.csv", 3)
    code, out, err = await smsbridge("send", "-c", str(config), "--csv", str(rows))
    assert code == 1, err
    assert "held 3: " in out, out
    assert "account locked or expired" in out
    assert simulator.state.calls["sendBatch"] == 0
    assert simulator.state.messages == []
    code, out, _ = await smsbridge("queue", "-c", str(config))
    assert out.count("bulk:") == 3  # waiting in the queue, by the run's name


async def test_beside_a_running_daemon_each_row_goes_once_after_pages(
    smsbridge_daemon: DaemonFactory, simulator: Simulator, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite3"
    daemon = await smsbridge_daemon(
        gateway(simulator, store, "polling: {replies: 1h, reports: 1h, balance: 1h}\n")
    )
    rows = csv_file(tmp_path / "rows.csv", 120)
    config = str(daemon.settings.path)
    code, out, err = await smsbridge("send", "-c", config, "--csv", str(rows), "--yes")
    assert (code, err) == (0, ""), err
    assert "sent 120 of 120" in out
    assert sorted(m.mobile for m in simulator.state.messages) == [number(i) for i in range(120)]
    code, out, _ = await smsbridge("messages", "-c", config, "--limit", "1")
    assert "bulk:" in out


async def test_due_pages_are_claimed_before_bulk_rows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:

        def fill(conn: sqlite3.Connection) -> None:
            for index in range(5):
                conn.execute(
                    """INSERT INTO jobs (output, recipient, text, rule, state, next_at,
                       created_at, updated_at, rank) VALUES ('sms', ?, 'x', 'bulk:a', 'pending',
                       1, 1, 1, 1)""",
                    (number(index),),
                )
            conn.execute(
                """INSERT INTO jobs (output, recipient, text, rule, state, next_at, created_at,
                   updated_at) VALUES ('sms', ?, 'page', 'critical', 'pending', 2, 2, 2)""",
                (number(9),),
            )

        await store.write(fill)
        claimed = await store.write(lambda conn: jobs.claim(conn, "sms", 3, 2))
        assert [record.text for record in claimed] == ["x", "page"]  # by id, the page first in
        claimed = await store.write(lambda conn: jobs.claim(conn, "sms", 3, 10, rule="critical"))
        assert claimed == []
        claimed = await store.write(lambda conn: jobs.claim(conn, "sms", 3, 10, rule="bulk:a"))
        assert len(claimed) == 4
    finally:
        await store.close()


def terminal(master: int) -> str:
    """Everything written to a pseudo-terminal until its last writer closes it; a 'y' answers
    the confirmation when it is asked."""
    seen = b""
    answered = False
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child's side is closed
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(master, b"y\n")
            answered = True
    return seen.decode(errors="replace")


async def test_on_a_terminal_it_asks_first_and_shows_progress(
    simulator: Simulator, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite3"
    config = tmp_path / "c.yaml"
    config.write_text(gateway(simulator, store, "bulk: {confirm_above: 0.1}\n"))
    rows = csv_file(tmp_path / "rows.csv", 3)
    master, slave = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            SMSBRIDGE, "send", "-c", str(config), "--csv", str(rows),
            stdin=slave, stdout=asyncio.subprocess.PIPE, stderr=slave,
        )  # fmt: skip
        os.close(slave)
        reading = asyncio.create_task(asyncio.to_thread(terminal, master))
        out, _ = await process.communicate()
        screen = await reading
    finally:
        os.close(master)
    assert process.returncode == 0, screen
    assert "3 SMS, estimated 0.30 yuan, above bulk.confirm_above (0.1 yuan). Send? [y/N]" in screen
    assert "\r[" in screen
    assert "3/3  sent 3, failed 0, held 0" in screen
    assert "sent 3 of 3" in out.decode()
    assert len(simulator.state.messages) == 3


async def test_a_low_balance_holds_the_rest_without_calls_and_a_rerun_sends_it(
    simulator: Simulator, tmp_path: Path
) -> None:
    """15 yuan pays the first 100 of 250 rows; the second call is refused (-9) and the 50 rows
    behind it are held with it, without a call of their own. After a top-up, the same command
    sends the 150 held ones and nothing twice."""
    simulator.state.set_balance(remain=Decimal("15"))
    store = tmp_path / "s.sqlite3"
    config = tmp_path / "c.yaml"
    config.write_text(gateway(simulator, store, "dispatch: {concurrency: 1}\n"))
    rows = csv_file(tmp_path / "rows.csv", 250)
    code, out, err = await smsbridge("send", "-c", str(config), "--csv", str(rows), "--yes")
    assert code == 1, err
    assert "sent 100 of 250" in out
    assert "held 150: sendBatch: gateway refused with code -9: balance too low" in out
    assert simulator.state.calls["sendBatch"] == 2
    assert states(store) == {"sent": 100, "pending": 150}

    simulator.state.set_balance(add=Decimal("100"))
    code, out, err = await smsbridge("send", "-c", str(config), "--csv", str(rows), "--yes")
    assert (code, err) == (0, ""), out
    assert "sent 250 of 250" in out
    assert simulator.state.calls["sendBatch"] == 4
    assert sorted(m.mobile for m in simulator.state.messages) == [number(i) for i in range(250)]
