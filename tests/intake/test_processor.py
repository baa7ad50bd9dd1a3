"""The inbox and the processor, driven through a real daemon: answer first, rules after, replay."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.events import ReportRecord
from bridge.plugin import Parsed
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.store import Dialect, Store
from bridge.testing import post_json

A = "15102110086"
TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def write(tmp_path: Path, backend: tuple[Dialect, str]) -> Path:
    path = tmp_path / "config.yaml"
    where = f"url: {backend[1]}" if backend[1] else f"path: {tmp_path / 'store.sqlite3'}"
    path.write_text(
        f"""
store: {{{where}}}
server: {{listen: "127.0.0.1:0"}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
inputs:
  am: {{type: alertmanager, auth: {{bearer: {TOKEN}}}}}
contacts:
  alice: "{A}"
rules:
  - name: page
    match: {{kind: alert}}
    sms:
      to: [alice]
      template: "{{{{ labels.alertname }}}} {{{{ labels.instance }}}}"
  - name: ops-notice
    match: {{kind: system}}
    sms:
      to: [alice]
      template: "smsbridge: {{{{ labels.alertname }}}}"
"""
    )
    return path


def group(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "smsbridge",
        "alerts": list(alerts),
    }


def alert(name: str, instance: str = "db1", **extra: Any) -> dict[str, Any]:
    labels = {"alertname": name, "instance": instance}
    return {"status": "firing", "labels": labels, "fingerprint": f"{name}{instance}", **extra}


async def start(tmp_path: Path, backend: tuple[Dialect, str]) -> Daemon:
    daemon = Daemon(
        load_settings(write(tmp_path, backend)),
        simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None),
    )
    await daemon.start()
    return daemon


@pytest.fixture
async def daemon(tmp_path: Path, backend: tuple[Dialect, str]) -> AsyncIterator[Daemon]:
    """A daemon on each backend."""
    daemon = await start(tmp_path, backend)
    yield daemon
    await daemon.stop()


async def sms(daemon: Daemon, count: int) -> list[str]:
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) >= count)
    return sorted(message.content for message in daemon.simulator.state.messages)


async def test_an_escape_code_in_a_label_is_accepted_and_sent(daemon: Daemon) -> None:
    """A control character is stored as it came and cleaned when the SMS is rendered."""
    body = group(alert("DiskFull", "db\x1b[31m1\x1b"))
    assert await post_json(daemon, "/hooks/am", body, AUTH) == (
        200,
        {"accepted": 1, "duplicate": False, "rejected": []},
    )
    assert await sms(daemon, 1) == ["DiskFull db1"]


async def test_a_bad_alert_is_listed_the_good_ones_sent_and_operators_told(
    daemon: Daemon,
) -> None:
    """One unusable alert costs nothing beside it; a system event names it."""
    body = group(alert("DiskFull"), {"status": "firing", "labels": "oops"}, alert("CpuHigh"))
    status, answer = await post_json(daemon, "/hooks/am", body, AUTH)
    assert status == 200
    assert answer["accepted"] == 2
    assert answer["rejected"] == [{"index": 1, "error": "alerts[1].labels: expected an object"}]
    assert await sms(daemon, 3) == [
        "CpuHigh db1",
        "DiskFull db1",
        "smsbridge: InputItemsRejected",
    ]


async def test_a_lone_surrogate_never_costs_the_group(daemon: Daemon) -> None:
    """`\\ud800` is valid JSON but not text: replaced, and every alert of the request is sent."""
    text = json.dumps(group(alert("DiskFull", "db1"), alert("CpuHigh", "X")))
    data = text.replace('"X"', '"\\ud800"').encode()
    status, answer = await post_json(daemon, "/hooks/am", data, AUTH)
    assert (status, answer["accepted"]) == (200, 2)
    assert await sms(daemon, 2) == ["CpuHigh \ufffd", "DiskFull db1"]


async def store_unprocessed(store: Store, source: str, body: bytes) -> None:
    """What a crash right after the inbox commit leaves: a stored, unprocessed delivery."""
    await store.write(
        lambda conn: conn.execute(
            "INSERT INTO inbox (source, kind, body, received_at) VALUES (?, 'input', ?, ?)",
            (source, body, time.time()),
        )
    )


async def test_a_delivery_stored_before_a_crash_is_processed_at_the_next_start(
    tmp_path: Path, backend: tuple[Dialect, str], store_factory: Callable[[], Store]
) -> None:
    """The stored body is parsed again by its input: accepted means sent, crash or not."""
    first = await start(tmp_path, backend)
    await first.stop()
    store = store_factory()
    await store.open()
    await store_unprocessed(store, "am", json.dumps(group(alert("Replayed"))).encode())
    await store_unprocessed(store, "gone", b"{}")  # an input since removed
    await store_unprocessed(store, "am", b"not json")
    await store.close()
    daemon = await start(tmp_path, backend)
    try:
        assert await sms(daemon, 1) == ["Replayed db1"]
        await daemon.processor.drain()
        rows = await daemon.store.read(
            lambda conn: conn.execute(
                "SELECT source, processed_at IS NOT NULL AS done, error FROM inbox ORDER BY id"
            ).fetchall()
        )
        settled = [(row["source"], row["done"], row["error"]) for row in rows]
        assert settled == [
            ("am", 1, ""),
            ("gone", 1, "cannot read the stored delivery: input 'gone' is no longer configured"),
            (
                "am",
                1,
                "cannot read the stored delivery: malformed JSON: Expecting value at line 1 "
                "column 1",
            ),
        ]
    finally:
        await daemon.stop()


async def test_a_burst_of_reports_is_stored_in_chunks_and_webhooks_still_answer(
    daemon: Daemon,
) -> None:
    """20,000 delivery reports become 200 short transactions; a webhook in between is answered
    (and its SMS sent) before the burst is through."""
    reports = [ReportRecord(f"9{n:017d}", A, "delivered", "DELIVRD") for n in range(20_000)]
    await daemon.records.received("sms", "getSendState", b"<xml/>", reports=reports)
    chunks = await daemon.store.read(
        lambda conn: conn.execute("SELECT count(*) FROM inbox WHERE kind = 'reports'").fetchone()[0]
    )
    assert chunks == 200
    status, _ = await post_json(daemon, "/hooks/am", group(alert("DuringBurst")), AUTH)
    assert status == 200
    left = await daemon.store.read(
        lambda conn: conn.execute(
            "SELECT count(*) FROM inbox WHERE processed_at IS NULL AND kind = 'reports'"
        ).fetchone()[0]
    )
    assert left > 0, "the answer came while reports were still waiting"
    await daemon.processor.drain()
    seen = await daemon.store.read(
        lambda conn: conn.execute("SELECT count(*) FROM seen_records").fetchone()[0]
    )
    assert seen == 20_000
    assert await sms(daemon, 1) == ["DuringBurst db1"]


async def test_two_processors_never_take_one_row_twice(daemon: Daemon) -> None:
    """Batches are taken one at a time: concurrent drains give one SMS per alert."""
    for n in range(5):
        body = group(alert(f"A{n}"))
        body["groupKey"] = f"g{n}"
        assert (await post_json(daemon, "/hooks/am", body, AUTH))[0] == 200
    await asyncio.gather(*(daemon.processor.drain() for _ in range(4)))
    assert len(await sms(daemon, 5)) == 5
    jobs = await daemon.store.read(
        lambda conn: conn.execute("SELECT count(*) FROM jobs").fetchone()
    )
    assert jobs[0] == 5


async def test_a_parse_cached_after_its_row_was_processed_is_not_kept(daemon: Daemon) -> None:
    """The answer to a submit can come back after the processor took its row: that cached
    parse must not hold a place in the bounded cache for ever."""
    for n in range(3):
        body = group(alert(f"A{n}"))
        body["groupKey"] = f"g{n}"
        assert (await post_json(daemon, "/hooks/am", body, AUTH))[0] == 200
    await daemon.processor.drain()
    processor = daemon.processor
    stale = next(iter(processor._cache.values()), None)
    processor._cache[1] = stale or Parsed([])  # as if cached after row 1 was processed
    processor._cached += len(processor._cache[1].events)
    body = group(alert("Later"))
    body["groupKey"] = "later"
    assert (await post_json(daemon, "/hooks/am", body, AUTH))[0] == 200
    await processor.drain()
    assert (processor._cache, processor._cached) == ({}, 0)
