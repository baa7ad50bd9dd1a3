"""CPU per alert behind the webhook: rules, storing, claiming, sending and recording.

Run: .venv/bin/python bench/pipeline.py [--alerts 6000] [--profile] [--json]

bench/ingest.py gives the figures the issue asks for; this splits its per-request cost. The
daemon runs in this process without its HTTP side: webhook bodies go straight to the inbox
(`Processor.submit`, 32 at a time, one alert each, parsed as the alertmanager input parses
them), the processor turns them into jobs in the background, and the run ends when the gateway
has taken every one. This process's CPU time, every thread of it, divided by
the alerts is the figure; the c123 simulator runs in a subprocess on another CPU, so its work
is not counted. With --profile, cProfile follows the event loop and the store's writer thread,
each on its own thread's CPU clock, and prints where the time went (profiling roughly doubles
it: read the shares).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
from ingest import QUICK, AlertSource, Server, start_server, write_config

from bridge.logging import configure_logging
from bridge.plugin.base import Delivery
from bridge.plugins.alertmanager.payload import Payload
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import SMS_OUTPUT, load_settings

CONCURRENCY = 32
WARMUP = 500
# The simulator with money enough for every send, answering as `smsbridge run` announces itself.
SIMULATOR = """
import asyncio, json
from decimal import Decimal
import structlog
from bridge.plugins.c123.simulator import SimAccount, Simulator, SimulatorSettings

async def main():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=3600
    )
    async with Simulator(settings) as sim:
        print(json.dumps({"event": "daemon_started", "url": sim.url}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def submissions(source: AlertSource, count: int) -> list[Delivery]:
    """What the alertmanager input would hand to the inbox for `count` one-alert webhooks."""
    out = []
    for body in source.bodies(count, 1):
        parsed, key = Payload.model_validate_json(body).parse("am")
        out.append(Delivery(body, parsed, dedupe_key=key, dedupe_window=14400))
    return out


def sent(daemon: Daemon) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "smsbridge_messages_total", {"output": SMS_OUTPUT, "outcome": "sent"}
    )
    return value or 0.0


async def push(daemon: Daemon, batch: list[Delivery], total: int) -> None:
    """Submit every webhook, CONCURRENCY at a time, then wait until `total` SMS were sent."""
    todo = iter(batch)

    async def worker() -> None:
        for delivery in todo:
            await daemon.processor.submit("am", delivery)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    # The count lives in a metric, which has nothing to await; a short poll costs little.
    while sent(daemon) < total:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def run(alerts: int, profile: bool, workdir: Path) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    simulator_cpus = frozenset(cpus[:1]) if len(cpus) > 1 else None
    if simulator_cpus is not None:
        os.sched_setaffinity(0, set(cpus[1:]))
    simulator: Server = await start_server(
        "simulator", [sys.executable, "-c", SIMULATOR], workdir / "simulator.log", simulator_cpus
    )
    try:
        config = write_config(workdir, simulator.url, QUICK.teams)
        with (workdir / "daemon.log").open("w") as log:
            configure_logging(log, json=True, level="info")  # the daemon's own log lines count
            daemon = Daemon(load_settings(config))
            await daemon.start()
            try:
                source = AlertSource(QUICK.teams)
                await push(daemon, submissions(source, WARMUP), WARMUP)
                batch = submissions(source, alerts)  # built before the clock starts
                # Each profiler clocks its own thread's CPU, so waits (epoll, the GIL) count nil.
                profilers = [cProfile.Profile(time.thread_time) for _ in range(2 * profile)]
                if profilers:
                    # A store write runs on the writer thread, where the rules' SQL and the
                    # outcomes' records run: the second profiler is switched on there.
                    await daemon.store.write(lambda _: profilers[1].enable())
                    profilers[0].enable()
                cpu, wall = time.process_time(), time.perf_counter()
                await push(daemon, batch, WARMUP + alerts)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                if profilers:
                    profilers[0].disable()
                    await daemon.store.write(lambda _: profilers[1].disable())
            finally:
                await daemon.stop()
    finally:
        await simulator.stop()
    if profilers:
        stats = pstats.Stats(profilers[0])
        stats.add(profilers[1])
        stats.sort_stats("cumulative").print_stats(45)
    return {
        "alerts": alerts,
        "cpu_us_per_alert": round(1e6 * cpu / alerts, 1),
        "wall_us_per_alert": round(1e6 * wall / alerts, 1),
        "profiled": profile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=6000)
    parser.add_argument("--profile", action="store_true", help="print where the time went")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        result = asyncio.run(run(args.alerts, args.profile, Path(tmp)))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"pipeline + dispatch: {result['cpu_us_per_alert']} µs CPU per alert"
            f" ({result['alerts']} alerts, wall {result['wall_us_per_alert']} µs each"
            f"{', profiled' if args.profile else ''})"
        )


if __name__ == "__main__":
    main()
