"""`smsbridge run` and `smsbridge check`: the daemon itself, and its config check."""

from __future__ import annotations

import argparse
import asyncio
import sys
from functools import partial
from pathlib import Path

import structlog

from bridge.commands.common import EXIT_OK
from bridge.config import format_path
from bridge.runtime import Daemon, Notifier, health, load_settings, memory

log = structlog.get_logger("smsbridge")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run` and `check`."""
    run = subparsers.add_parser(
        "run",
        help="run the daemon",
        description=(
            "Run smsbridge: serve webhooks, send SMS from the outbox, poll replies and delivery "
            "reports. SIGHUP reloads the config (a bad one keeps the old running); SIGTERM "
            "stops after sends under way finish. With no gateway configured, a built-in "
            "simulator stands in."
        ),
    )
    run.add_argument("-c", "--config", type=Path, metavar="FILE", help="config file")
    run.set_defaults(handler=cmd_run, long_running=True, log_stream="stdout")
    check = subparsers.add_parser(
        "check",
        help="check a config file and exit (0 valid, 78 invalid)",
        description="Load the config as `run` would and report every problem, with file:line.",
    )
    check.add_argument("-c", "--config", type=Path, metavar="FILE", required=True)
    check.set_defaults(handler=cmd_check)


async def cmd_run(args: argparse.Namespace) -> int:
    notifier: Notifier = args.notifier
    # Loaded on the loop's own thread: nothing is served yet, and a worker thread would keep
    # what loading allocates and frees in a malloc arena of its own (idle RSS, measured).
    settings = load_settings(args.config)
    for warning in settings.warnings:
        log.warning(
            "config_warning",
            where=warning.location(),
            path=format_path(warning.path),
            problem=warning.message,
        )
    notifier.status("starting")
    daemon = Daemon(settings)
    await daemon.start()
    memory.tune_collector()
    notifier.ready(health.status_line(daemon))
    reloads: asyncio.Queue[None] = args.reload_requests

    async def reload_on_request() -> None:
        while True:
            await reloads.get()
            notifier.reloading()
            ok = await daemon.reload()
            status = health.status_line(daemon)
            notifier.ready(status if ok else f"reload failed, kept the previous config; {status}")

    daemon.supervisor.start("reload", reload_on_request)
    # Not supervised: if the pinger itself failed, systemd restarting the service is right.
    watchdog = asyncio.create_task(notifier.watchdog(partial(health.alive, daemon)))
    try:
        await asyncio.Event().wait()  # until the command line cancels us on SIGTERM/SIGINT
    finally:
        notifier.stopping()
        watchdog.cancel()
        await daemon.supervisor.stop(["reload"])  # take no reload while everything stops
        await daemon.stop()
    return EXIT_OK


async def cmd_check(args: argparse.Namespace) -> int:
    settings = await asyncio.to_thread(load_settings, args.config)
    config = settings.config
    for warning in settings.warnings:
        print(f"warning: {warning.render()}", file=sys.stderr)
    print(
        f"{args.config}: OK ({len(config.inputs)} inputs, {len(config.outputs) + 1} outputs, "
        f"{len(config.rules)} rules, gateway: "
        f"{config.gateway.base_url if config.gateway else 'built-in simulator'})"
    )
    return EXIT_OK
