"""Retention figures: the store's size under a constant load, and how long ingest waits on it.

Run: .venv/bin/python bench/retention.py [--days 60] [--per-day 2000] [--retention 30] [--json]
Simulates `days` of traffic on a simulated clock: each day `per-day` delivered messages (a 1.7 KB
alert event, its sent job, its conversation) and an idle daemon's polls (getReply every 10 s,
getSendState every 30 s, getBalance every 5 min, as stored raw answers), then one retention run.
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
from pathlib import Path

import bridge.store.vacuum as vacuum
from bridge.outbox.retention import RetentionPolicy, prune
from bridge.store import Store

DAY = 86400.0
ALERT = json.dumps({"labels": {"alertname": "DiskFull", "instance": "db1"}, "x": "y" * 1600})
POLLS_PER_DAY = (("getReply", 8640), ("getSendState", 2880), ("getBalance", 288))
TINY_WRITE = "INSERT OR REPLACE INTO settings (key, value) VALUES ('bench', 'x')"
EMPTY_ANSWER = b'<?xml version="1.0" encoding="UTF-8"?><xml><Result>1</Result></xml>'


def one_day(conn: sqlite3.Connection, day_start: float, per_day: int) -> None:
    step = DAY / per_day
    for n in range(per_day):
        at = day_start + n * step
        event = conn.execute(
            "INSERT INTO events (body, received_at) VALUES (?, ?)", (ALERT, at)
        ).lastrowid
        job = conn.execute(
            """INSERT INTO jobs (output, recipient, text, event_id, state, next_at, created_at,
                                 updated_at, ref, segments, cost, delivery)
               VALUES ('sms', '15102110086', ?, ?, 'sent', ?, ?, ?, '158830675912720700', 1,
                       '0.05', 'delivered')""",
            ("[FIRING:1] DiskFull db1 disk / is 97% full", event, at, at, at + 2),
        ).lastrowid
        conn.execute(
            """INSERT INTO conversations (mobile, job_id, event_id, created_at, expires_at)
               VALUES ('15102110086', ?, ?, ?, ?)""",
            (job, event, at, at + DAY),
        )
        conn.execute(
            "INSERT INTO dedupe (key, expires_at) VALUES (?, ?)", (f"am|{day_start}|{n}", at + 600)
        )
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
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.sqlite3"
        store = Store(path, synchronous="NORMAL")  # the bench measures size, not fsync
        await store.open()
        policy = RetentionPolicy(keep=retention_days * DAY, keep_record_keys=7 * DAY)
        start = 1_767_000_000.0
        sizes: list[int] = []
        waits: list[float] = []
        prune_seconds: list[float] = []
        for day in range(days):
            day_start = start + day * DAY
            await store.write(lambda conn, d=day_start: one_day(conn, d, per_day))
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
