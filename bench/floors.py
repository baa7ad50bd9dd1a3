"""Floors under the accept and full paths: what their unavoidable parts cost alone.

Run: .venv/bin/python bench/floors.py [--rounds 5] [--batch 16] [--json]
1. The store: runs `inbox.store_many` (the two statements a coalesced batch of webhooks costs)
and its commit straight on one connection of a store made by SqliteStore, with the store's pragmas
(WAL, synchronous=FULL, statement journal in memory): no event loop, no thread, no HTTP. The
bodies are bench/ingest.py's 1.7 KB alerts, `--batch` to a commit (about what `wrk -c32` gives
the daemon), after 48,000 rows already stored. Two variants, alternating within each round:
with the de-duplication key (as the Alertmanager input stores it) and without one. Prints CPU
µs a row (user, system) and WAL frames (pages) a commit, median of the rounds.
2. A gateway call: an aiohttp client session posting the same body to bench/ingest.py's bare
handler, 8 at a time; the client's CPU µs a request (what each SMS's call costs the daemon
before the c123 client does anything of its own), median of the rounds.
3. The input: what the Alertmanager input does to a body on the request path, alone (validate
it, pick the usable alerts, make the de-duplication key), CPU µs a body, best of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import aiohttp
from ingest import QUICK, payload, start_bare

import bridge.intake.inbox as inbox
from bridge.plugin import load_model, sha256_hex
from bridge.plugins.alertmanager.payload import Payload
from bridge.store import SqliteStore

PREFILL = 48_000
TIMED = 32_000  # rows a round, per variant
FRAMED = 3_200  # rows over which WAL frames are counted
JSON_HEADERS = {"Content-Type": "application/json"}
WINDOW = 4 * 3600.0  # the Alertmanager input's default dedupe window


def connect(path: Path) -> sqlite3.Connection:
    """A connection set up as the store's writer is (the file is already in WAL mode)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("synchronous=FULL", "foreign_keys=ON", "temp_store=MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


class Writer:
    """Stores rows a batch a commit, each row's key unique (a new delivery every time)."""

    def __init__(self, conn: sqlite3.Connection, body: bytes, dedupe: bool) -> None:
        self.conn, self.body, self.dedupe, self.count = conn, body, dedupe, 0

    def rows(self, batch: int) -> list[inbox.NewRow]:
        now = time.time()
        made = []
        for _ in range(batch):
            self.count += 1
            key = sha256_hex("bench", self.dedupe, self.count) if self.dedupe else ""
            window = WINDOW if self.dedupe else 0.0
            made.append(inbox.NewRow("am", self.body, now, dedupe_key=key, dedupe_window=window))
        return made

    def write(self, total: int, batch: int) -> None:
        batches = [self.rows(batch) for _ in range(total // batch)]  # made before any timing
        self.store(batches)

    def store(self, batches: list[list[inbox.NewRow]]) -> None:
        for rows in batches:
            self.conn.execute("BEGIN IMMEDIATE")
            inbox.store_many(self.conn, rows)
            self.conn.execute("COMMIT")


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def timed(writer: Writer, batch: int) -> dict[str, float]:
    """CPU µs a row over TIMED rows, and WAL frames a commit over FRAMED more."""
    batches = [writer.rows(batch) for _ in range(TIMED // batch)]
    user, system = cpu()
    writer.store(batches)
    after_user, after_system = cpu()
    conn = writer.conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    writer.write(FRAMED, batch)
    frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    return {
        "user_us": 1e6 * (after_user - user) / TIMED,
        "system_us": 1e6 * (after_system - system) / TIMED,
        "frames_per_commit": frames / (FRAMED // batch),
    }


async def make_store(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()


CALLS = 5_000  # client requests a round


async def client_round(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    """The client's CPU µs a request over CALLS requests, 8 in flight."""
    slots = asyncio.Semaphore(8)

    async def call() -> None:
        async with slots, session.post(url, data=body, headers=JSON_HEADERS) as answer:
            await answer.read()

    user, system = cpu()
    await asyncio.gather(*(call() for _ in range(CALLS)))
    after_user, after_system = cpu()
    return 1e6 * (after_user - user + after_system - system) / CALLS


async def client_floor(rounds: int, body: bytes, workdir: Path) -> float:
    bare = await start_bare(workdir, QUICK)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{bare.url}/hooks/floor"
            await client_round(session, url, body)  # untimed: connections open
            return statistics.median(
                [await client_round(session, url, body) for _ in range(rounds)]
            )
    finally:
        await bare.stop()


def input_floor(rounds: int, body: bytes) -> float:
    def read() -> None:
        load_model(Payload, body).parse("am", WINDOW)

    return 1e6 * min(timeit.repeat(read, number=CALLS, repeat=rounds)) / CALLS


def main(rounds: int, batch: int) -> dict[str, Any]:
    body = payload(1, 1, 100)
    figures: dict[str, list[dict[str, float]]] = {"dedupe": [], "no_dedupe": []}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        writers = {}
        for name in figures:
            path = Path(tmp) / f"{name}.sqlite3"
            asyncio.run(make_store(path))
            writers[name] = Writer(connect(path), body, name == "dedupe")
            writers[name].write(PREFILL, batch)
        for round_ in range(rounds):
            order = list(figures) if round_ % 2 == 0 else list(reversed(figures))
            for name in order:
                figures[name].append(timed(writers[name], batch))
        for writer in writers.values():
            writer.conn.close()
        client_us = asyncio.run(client_floor(rounds, body, Path(tmp)))
    result: dict[str, Any] = {"batch": batch, "rounds": rounds, "body_bytes": len(body)}
    for name, runs in figures.items():
        result[name] = {
            key: round(statistics.median(run[key] for run in runs), 1) for key in runs[0]
        }
        result[name]["total_us"] = round(result[name]["user_us"] + result[name]["system_us"], 1)
    result["client_request_us"] = round(client_us, 1)
    result["input_us"] = round(input_floor(rounds, body), 1)
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['body_bytes']} B bodies, {result['batch']} to a commit, "
        f"median of {result['rounds']} rounds"
    ]
    for name in ("dedupe", "no_dedupe"):
        f = result[name]
        lines.append(
            f"{name:10s} CPU {f['total_us']:5.1f} µs a row (user {f['user_us']}, system "
            f"{f['system_us']}); {f['frames_per_commit']} WAL frames a commit"
        )
    lines.append(f"aiohttp client request: {result['client_request_us']} µs of the client's CPU")
    lines.append(f"the Alertmanager input's validation and key: {result['input_us']} µs a body")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found = main(args.rounds, args.batch)
    print(json.dumps(found, indent=2) if args.json else table(found))
