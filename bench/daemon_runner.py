"""`smsbridge run` as the command line runs it, with two hooks a bench needs and nothing else.

Run: python bench/daemon_runner.py [--hold-processor] [--advance SECONDS] -c CONFIG

- --hold-processor: the inbox processor starts only on SIGUSR1, so the CPU a webhook costs on
  the request path (auth, parsing, the inbox commit, the answer) can be measured apart from
  the CPU the processor spends on it afterwards. The daemon is otherwise unchanged.
- --advance SECONDS: the daemon's clock is the wall clock plus an offset; each SIGUSR2 moves it
  SECONDS forward and runs retention at once, as the hourly job does (with the same policy).
  Prints `{"event": "bench_clock_advanced", ...}` to the log (stdout) when the run is done.
Either way the process is `bridge.cli.main(["run", ...])`: signals, logging, start and stop are
the daemon's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

import bridge.commands.daemon as command
import bridge.intake.processor as processor
from bridge.cli import main
from bridge.outbox import retention
from bridge.runtime.daemon import KEEP_RECORD_KEYS, Daemon


def hold_processor() -> None:
    """The processor's loop waits for SIGUSR1 before its first batch."""
    run = processor.Processor.run

    async def held(self: processor.Processor) -> None:
        released = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, released.set)
        await released.wait()
        await run(self)

    processor.Processor.run = held  # type: ignore[method-assign]


def movable_clock(step: float) -> None:
    """Every daemon built by `run` gets a clock SIGUSR2 moves `step` seconds forward."""
    offset = [0.0]
    running: list[Daemon] = []

    def clock() -> float:
        return time.time() + offset[0]

    async def advance() -> None:
        offset[0] += step
        daemon = running[0]
        keep = daemon.settings.config.store.retention.total_seconds()
        policy = retention.RetentionPolicy(keep=keep, keep_record_keys=KEEP_RECORD_KEYS)
        pruned = await retention.prune(daemon.store, clock(), policy)
        line = {"event": "bench_clock_advanced", "offset": offset[0], "pruned": pruned.rows}
        print(json.dumps(line), flush=True)

    tasks: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        task = asyncio.get_running_loop().create_task(advance())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def build(settings: Any, **kwargs: Any) -> Daemon:
        daemon = Daemon(settings, clock=clock, **kwargs)
        running[:] = [daemon]
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, on_signal)
        return daemon

    command.Daemon = build  # type: ignore[assignment,misc]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold-processor", action="store_true")
    parser.add_argument("--advance", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("-c", "--config", required=True)
    args = parser.parse_args()
    if args.hold_processor:
        hold_processor()
    if args.advance:
        movable_clock(args.advance)
    sys.exit(main(["run", "-c", args.config]))
