"""Soak: a daemon under mixed load and gateway faults, its clock run past the retention.

Run: .venv/bin/python bench/soak.py [--minutes 10 | --quick] [--json]
(--quick is about a minute; the default is ten. Not part of CI.)

A real `smsbridge run` (through bench/daemon_runner.py, whose only change is a clock that
moves forward on a signal, with retention run at once) takes, for the whole run:
- webhooks of realistic 1.7 KB Alertmanager alerts (bench/ingest.py's) at `--rate` a second,
  one alert each, every one new;
- SMS replies the gateway is given for numbers that were paged (the simulator's inject_reply);
- delivery reports for every message (the simulator reports each after two seconds; the daemon
  polls replies and reports every two seconds);
- a gateway fault through the simulator's fault API every few seconds, in turn: a delay, a
  dropped connection, an HTTP 500, a malformed answer, and a call processed but never answered;
- every `tick` seconds the daemon's clock `advance`s (hours) and retention runs, so the run
  covers several times `store.retention` (`--retention-days`).
RSS, the store's size (file and WAL), the jobs it keeps and /readyz are sampled throughout.
At the end the load stops, the faults are cleared, and every alert the daemon accepted must
reach the gateway (its text is the alert's name) within a deadline: nothing lost.

Before the soak, `--per-message` alerts go through a daemon of their own, each delivered and
reported (webhook -> inbox -> event -> job -> sent -> report), to give the store's bytes per
delivered message: the pages in use over those of the same daemon with no traffic, once with
the day's inbox bodies and raw polls still kept, and once after the clock moved a day on and
retention dropped them (what a message costs for the rest of `store.retention`). The soak's own
store is dominated by fixed pages and its WAL at its few messages per simulated day.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from ingest import (
    HEADERS,
    QUICK,
    AlertSource,
    Server,
    Tuning,
    alert_name,
    blast,
    proc_status,
    read_only,
    reported,
    start_daemon,
    unprocessed,
    wait_sent,
)

from bridge.plugins.c123.simulator import SimAccount, Simulator, SimulatorSettings

HOUR = 3600.0
DELIVER_TIMEOUT = 180.0
FAULTS = (
    {"kind": "delay", "seconds": 3.0},
    {"kind": "drop"},
    {"kind": "http500", "count": 2},
    {"kind": "malformed", "variant": "truncated"},
    {"kind": "accept_then_drop"},
)


@dataclass(frozen=True, slots=True)
class SoakPlan:
    seconds: float
    rate: float  # webhooks a second
    tick: float  # real seconds between clock advances
    advance: float  # simulated seconds per advance
    retention_days: int
    reply_every: float = 1.0
    fault_every: float = 5.0
    sample_every: float = 2.0


@dataclass(slots=True)
class Run:
    """What the load generators saw."""

    accepted: list[str] = field(default_factory=list)  # alert names answered 200, accepted: 1
    refused: list[str] = field(default_factory=list)  # answers other than that
    answer_ms: list[float] = field(default_factory=list)
    replies: int = 0
    faults: int = 0
    ticks: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)


def store_bytes(path: Path) -> tuple[int, int]:
    """The database file and its WAL, in bytes."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size, wal.stat().st_size if wal.exists() else 0


def used_bytes(path: Path) -> int:
    """Bytes of the database's pages in use (not free), read-only."""
    with read_only(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)


async def per_message(workdir: Path, count: int) -> dict[str, Any]:
    """Store bytes per delivered, reported message of a realistic alert, through the daemon."""
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=0.5
    )
    tuning = Tuning(reports="1s", replies="1h")
    figures: dict[str, Any] = {"messages": count}
    async with Simulator(settings) as sim:
        daemon = await start_daemon(
            workdir, sim.url, QUICK, tuning=tuning, runner=["--advance", str(86400.0 + 60)]
        )
        path = workdir / "outbox.sqlite3"
        try:
            await asyncio.sleep(1.0)  # the start-up polls are stored
            empty = await asyncio.to_thread(used_bytes, path)
            await blast(f"{daemon.url}/hooks/am", AlertSource(QUICK.teams).bodies(count, 1), 8)
            await wait_sent(sim, count)
            deadline = time.perf_counter() + DELIVER_TIMEOUT
            while await asyncio.to_thread(reported, path) < count or await asyncio.to_thread(
                unprocessed, path
            ):
                if time.perf_counter() > deadline:
                    raise RuntimeError("the reports were not all recorded")
                await asyncio.sleep(0.2)
            day = await asyncio.to_thread(used_bytes, path)
            figures["rows_first_day"] = await asyncio.to_thread(kept, path)
            daemon.proc.send_signal(signal.SIGUSR2)  # a day on: processed inbox and polls go
            log = workdir / "daemon.log"
            while "bench_clock_advanced" not in log.read_text(errors="replace"):
                if time.perf_counter() > deadline:
                    raise RuntimeError("retention did not run")
                await asyncio.sleep(0.1)
            later = await asyncio.to_thread(used_bytes, path)
            figures["rows_after_a_day"] = await asyncio.to_thread(kept, path)
        finally:
            await daemon.stop()
    figures["empty_store_kb"] = empty // 1024
    figures["bytes_per_message_first_day"] = round((day - empty) / count)
    figures["bytes_per_message_after_a_day"] = round((later - empty) / count)
    figures["target_bytes"] = 1500
    return figures


def kept(path: Path) -> dict[str, int]:
    """Rows kept per table that grows with traffic, read with the store opened read-only."""
    with read_only(path) as conn:
        tables = ("jobs", "events", "inbox", "raw_polls", "conversations", "seen_records")
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # noqa: S608 - fixed names


async def webhooks(http: aiohttp.ClientSession, url: str, plan: SoakPlan, run: Run) -> None:
    """One-alert webhooks on a fixed schedule, whatever the answers (open loop)."""
    source = AlertSource(QUICK.teams)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def post(body: bytes, name: str) -> None:
        sent = time.perf_counter()
        try:
            async with http.post(url, data=body) as response:
                answer = await response.json(content_type=None)
                ok = response.status == 200 and answer.get("accepted") == 1
        except (aiohttp.ClientError, ValueError):
            ok = False
        run.answer_ms.append(1000 * (time.perf_counter() - sent))
        (run.accepted if ok else run.refused).append(name)

    start = loop.time()
    n = 0
    try:
        while True:
            due = start + n / plan.rate
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            name = alert_name(source.next_alert)
            task = asyncio.create_task(post(source.bodies(1, 1)[0], name))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
    finally:
        # Requests under way are answered: their alerts count as accepted or not.
        await asyncio.gather(*pending, return_exceptions=True)


async def replies(sim: Simulator, plan: SoakPlan, run: Run) -> None:
    """A reply from a number that was paged, now and then ("ack", a reply code, free text)."""
    texts = ("ack", "1", "on it, looking now", "ACK 2")
    while True:
        await asyncio.sleep(plan.reply_every)
        messages = sim.state.messages
        if messages:
            mobile = messages[-1 - run.replies % min(len(messages), 50)].mobile
            sim.state.inject_reply(mobile, texts[run.replies % len(texts)])
            run.replies += 1


async def faults(http: aiohttp.ClientSession, sim: Simulator, plan: SoakPlan, run: Run) -> None:
    """The next fault in turn, through the simulator's fault API."""
    while True:
        await asyncio.sleep(plan.fault_every)
        fault = FAULTS[run.faults % len(FAULTS)]
        async with http.post(f"{sim.url}/_sim/faults", json=fault) as response:
            if response.status >= 300:
                raise RuntimeError(f"fault refused: {await response.text()}")
        run.faults += 1


async def clock(daemon: Server, plan: SoakPlan, run: Run) -> None:
    while True:
        await asyncio.sleep(plan.tick)
        daemon.proc.send_signal(signal.SIGUSR2)
        run.ticks += 1


async def ready(http: aiohttp.ClientSession, daemon: Server) -> tuple[int, str]:
    try:
        async with http.get(f"{daemon.url}/readyz") as response:
            return response.status, (await response.text())[:200]
    except aiohttp.ClientError as exc:
        return 0, type(exc).__name__


async def sample(
    http: aiohttp.ClientSession,
    daemon: Server,
    path: Path,
    started: float,
    plan: SoakPlan,
    run: Run,
) -> dict[str, Any]:
    db, wal = store_bytes(path)
    status, text = await ready(http, daemon)
    figures = {
        "t": round(time.perf_counter() - started, 1),
        "simulated_days": round(run.ticks * plan.advance / 86400, 2),
        "rss_mb": proc_status(daemon.pid)["VmRSS"],
        "db_kb": db // 1024,
        "wal_kb": wal // 1024,
        "rows": await asyncio.to_thread(kept, path),
        "accepted": len(run.accepted),
        "readyz": status,
    }
    if status != 200:
        figures["readyz_text"] = text
    return figures


async def sampler(
    http: aiohttp.ClientSession, daemon: Server, path: Path, plan: SoakPlan, run: Run
) -> None:
    started = time.perf_counter()
    while True:
        run.samples.append(await sample(http, daemon, path, started, plan, run))
        await asyncio.sleep(plan.sample_every)


def flat(values: list[float]) -> dict[str, float]:
    """First half against second half of the samples: flat when the second is not higher."""
    half = len(values) // 2
    return {
        "first_half_max": max(values[:half]),
        "second_half_max": max(values[half:]),
        "second_half_median": statistics.median(values[half:]),
        "last": values[-1],
    }


async def soak(plan: SoakPlan, workdir: Path) -> dict[str, Any]:
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=2.0
    )
    tuning = Tuning(reports="2s", replies="2s", retention=f"{plan.retention_days}d")
    run = Run()
    async with Simulator(settings) as sim:
        daemon = await start_daemon(
            workdir, sim.url, QUICK, tuning=tuning, runner=["--advance", str(plan.advance)]
        )
        path = workdir / "outbox.sqlite3"
        try:
            connector = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as http:
                url = f"{daemon.url}/hooks/am"
                tasks = [
                    asyncio.create_task(webhooks(http, url, plan, run)),
                    asyncio.create_task(replies(sim, plan, run)),
                    asyncio.create_task(faults(http, sim, plan, run)),
                    asyncio.create_task(clock(daemon, plan, run)),
                    asyncio.create_task(sampler(http, daemon, path, plan, run)),
                ]
                try:
                    done, _ = await asyncio.wait(tasks, timeout=plan.seconds)
                    for task in done:  # a load task that ended early failed: say why
                        task.result()
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                sim.state.clear_faults()
                accepted = set(run.accepted)
                stopped = time.perf_counter()
                with contextlib.suppress(TimeoutError):
                    await sim.state.wait_for(
                        lambda s: accepted <= {m.content for m in s.messages},
                        timeout=DELIVER_TIMEOUT,
                    )
                delivered_after = time.perf_counter() - stopped
                final = await sample(http, daemon, path, stopped, plan, run)
        finally:
            await daemon.stop()
        at_gateway = [m.content for m in sim.state.messages]
        calls = dict(sim.state.calls)
    log = (workdir / "daemon.log").read_text(errors="replace").splitlines()
    events = [json.loads(line) for line in log if line.startswith("{")]
    lost = sorted(set(run.accepted) - set(at_gateway))
    later = run.samples[len(run.samples) // 2 :]
    sent = len(set(at_gateway) & set(run.accepted))
    return {
        "seconds": plan.seconds,
        "rate_per_s": plan.rate,
        "simulated_days": round(run.ticks * plan.advance / 86400, 2),
        "retention_days": plan.retention_days,
        "webhooks_accepted": len(run.accepted),
        "webhooks_refused": len(run.refused),
        "answer_ms_p50": round(statistics.median(run.answer_ms), 2),
        "answer_ms_p99": round(statistics.quantiles(run.answer_ms, n=100)[98], 2),
        "replies_injected": run.replies,
        "faults_injected": run.faults,
        "gateway_calls": calls,
        "lost": len(lost),
        "lost_first": lost[:5],
        "all_delivered_after_s": round(delivered_after, 1),
        "duplicates_at_gateway": len(at_gateway) - len(set(at_gateway)),
        "messages_sent": sent,
        "retention_runs": sum(e.get("event") == "bench_clock_advanced" for e in events),
        "errors_logged": sorted({e["event"] for e in events if e.get("level") == "error"}),
        "readyz_not_200": [s for s in run.samples if s["readyz"] != 200][:5],
        "readyz_final": final["readyz"],
        "rss_mb": flat([s["rss_mb"] for s in run.samples]),
        "store_kb": flat([s["db_kb"] + s["wal_kb"] for s in run.samples]),
        "jobs_kept": flat([s["rows"]["jobs"] for s in run.samples]),
        "store_bytes_per_kept_job_second_half": round(
            statistics.median(
                1024 * s["db_kb"] / s["rows"]["jobs"] for s in later if s["rows"]["jobs"]
            )
        ),
        "final": final,
        "samples": run.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--rate", type=float, default=20.0, help="webhooks a second")
    parser.add_argument("--retention-days", type=int, default=2)
    parser.add_argument("--per-message", type=int, default=5000, help="0: skip that part")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    seconds = 60.0 if args.quick else args.minutes * 60
    # Cover five retentions whatever the length: ticks every few seconds, hours each.
    tick = 2.0 if args.quick else 5.0
    advance = 5 * args.retention_days * 86400 / (seconds / tick)
    plan = SoakPlan(seconds, args.rate, tick, advance, args.retention_days)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        sizes = (
            asyncio.run(per_message(Path(tmp) / "per-message", args.per_message))
            if args.per_message
            else None
        )
        result = asyncio.run(soak(plan, Path(tmp) / "soak"))
    result["per_message"] = sizes
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if key not in ("samples", "final"):
            print(f"{key}: {value}")
    print("samples (t s, simulated days, rss MB, db+wal KB, jobs, readyz):")
    for s in result["samples"]:
        print(
            f"  {s['t']:>6} {s['simulated_days']:>6} {s['rss_mb']:>6} "
            f"{s['db_kb'] + s['wal_kb']:>7} {s['rows']['jobs']:>6} {s['readyz']}"
        )


if __name__ == "__main__":
    main()
