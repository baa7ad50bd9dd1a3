"""Retention figures: the store's size under a constant load, and how long ingest waits on it.

Run: .venv/bin/python bench/retention.py [--days 60] [--per-day 2000] [--retention 30] [--json]
Simulates `days` of traffic on a simulated clock: each day `per-day` delivered messages and an
idle daemon's polls (getReply every 10 s, getSendState every 30 s, getBalance every 5 min, as
stored raw answers), then one retention run. A message is what the daemon stores for a
realistic 1.7 KB Alertmanager alert (bench/ingest.py's, one alert a webhook): the webhook body
in the inbox, processed; the event the alertmanager input parses from it, stored by the real
encode path (`encode_event`, compressed); its sent job with the delivery report recorded; its
conversation; the delivery's de-duplication key and the report's record key.
bench/soak.py measures the same through a running daemon; this runs months in a minute.
Prints the file's size per day (flat once the retention is reached), bytes per message kept, and
the latency of small writes made while retention runs (what a webhook's commit waits).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest import alert, payload

import bridge.intake.inbox as inbox
import bridge.store.ledger as ledger
import bridge.store.vacuum as vacuum
from bridge.outbox.jobs import encode_event
from bridge.outbox.retention import RetentionPolicy, prune
from bridge.plugins.alertmanager.payload import Payload
from bridge.runtime.daemon import KEEP_RECORD_KEYS
from bridge.store import SqliteStore, Store

DAY = 86400.0
TEAMS = 100
POLLS_PER_DAY = (("getReply", 8640), ("getSendState", 2880), ("getBalance", 288))
FIRST_REF = 158830675912720700
TINY_WRITE = "INSERT OR REPLACE INTO settings (key, value) VALUES ('bench', 'x')"
EMPTY_ANSWER = b'<?xml version="1.0" encoding="UTF-8"?><xml><Result>1</Result></xml>'


@dataclass(frozen=True, slots=True)
class Message:
    """What the daemon stores for one delivered alert, made before the clock starts."""

    body: bytes  # the webhook body, as the inbox keeps it
    event: bytes  # encode_event of the parsed event
    dedupe_key: str
    text: str
    mobile: str


def message(n: int) -> Message:
    body = payload(n, 1, TEAMS)
    parsed, key = Payload.model_validate_json(body).parse("am")
    event = parsed.events[0]
    mobile = f"139{n % TEAMS:08d}"
    text = f"[FIRING:1] {event.labels['alertname']} {event.text}"[:300]
    return Message(body, encode_event(event), key, text, mobile)


def one_day(
    conn: sqlite3.Connection, day_start: float, messages: list[Message], first_ref: int
) -> None:
    step = DAY / len(messages)
    for n, msg in enumerate(messages):
        at = day_start + n * step
        row = inbox.store(conn, "am", msg.body, at, dedupe_key=msg.dedupe_key, dedupe_window=14400)
        event = conn.execute(
            "INSERT INTO events (body, received_at) VALUES (?, ?)", (msg.event, at)
        ).lastrowid
        ref = str(first_ref + n)
        job = conn.execute(
            """INSERT INTO jobs (output, recipient, text, rule, event_id, state, next_at,
                                 created_at, updated_at, ref, segments, cost, delivery,
                                 carrier_code)
               VALUES ('sms', ?, ?, 'team1', ?, 'sent', ?, ?, ?, ?, 2, '0.10', 'delivered',
                       'DELIVRD')""",
            (msg.mobile, msg.text, event, at, at, at + 2, ref),
        ).lastrowid
        conn.execute(
            """INSERT INTO conversations (mobile, job_id, event_id, created_at, expires_at)
               VALUES (?, ?, ?, ?, ?)""",
            (msg.mobile, job, event, at, at + DAY),
        )
        ledger.first_time(conn, f"report|{ref}|{msg.mobile}|DELIVRD", at + 30)
        inbox.mark_processed(conn, [row], at)
    for action, count in POLLS_PER_DAY:
        conn.executemany(
            """INSERT INTO raw_polls (account, action, body, received_at, processed_at)
               VALUES ('1001@500008880001', ?, ?, ?, ?)""",
            [
                (action, EMPTY_ANSWER, day_start + i * DAY / count, day_start + i * DAY / count)
                for i in range(count)
            ],
        )


def size(path: Path) -> int:
    """The database file alone (its WAL is bounded apart: checkpoints and journal_size_limit)."""
    return path.stat().st_size


async def ingest_while(store: Store, task: asyncio.Task[object]) -> list[float]:
    """Latencies of small writes made one after another until `task` is done."""
    latencies: list[float] = []
    while not task.done():
        started = time.perf_counter()
        await store.write(lambda conn: conn.execute(TINY_WRITE))
        latencies.append(time.perf_counter() - started)
    return latencies


async def main(days: int, per_day: int, retention_days: int) -> dict[str, object]:
    # Alerts of one day differ (names, pods, fingerprints); later days repeat them with new
    # de-duplication keys, which costs the same bytes.
    messages = [message(n) for n in range(per_day)]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.sqlite3"
        store = SqliteStore(path, synchronous="NORMAL")  # the bench measures size, not fsync
        await store.open()
        policy = RetentionPolicy(keep=retention_days * DAY, keep_record_keys=KEEP_RECORD_KEYS)
        start = 1_767_000_000.0
        sizes: list[int] = []
        waits: list[float] = []
        prune_seconds: list[float] = []
        for day in range(days):
            day_start = start + day * DAY
            await store.write(
                lambda conn, d=day_start, r=day * per_day: one_day(conn, d, messages, FIRST_REF + r)
            )
            started = time.perf_counter()
            task = asyncio.create_task(prune(store, day_start + DAY, policy))
            waits += await ingest_while(store, task)
            await task
            prune_seconds.append(time.perf_counter() - started)
            await store.maintain(vacuum.checkpoint)
            sizes.append(size(path))
        await store.close()
    kept_messages = min(days, retention_days + 1) * per_day
    return {
        "days": days,
        "per_day": per_day,
        "retention_days": retention_days,
        "size_mb_by_day": [round(s / 1e6, 1) for s in sizes],
        "size_mb_final": round(sizes[-1] / 1e6, 1),
        "bytes_per_message_kept": round(sizes[-1] / kept_messages),
        "alert_json_bytes": len(json.dumps(alert(0, TEAMS))),
        "event_body_bytes": round(statistics.mean(len(m.event) for m in messages)),
        "target_bytes_per_message": 1500,
        "retention_run_seconds_median": round(statistics.median(prune_seconds), 3),
        "ingest_wait_ms_p50": round(statistics.median(waits) * 1000, 2),
        "ingest_wait_ms_p99": round(statistics.quantiles(waits, n=100)[98] * 1000, 2),
        "ingest_wait_ms_max": round(max(waits) * 1000, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--retention", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args.days, args.per_day, args.retention))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
