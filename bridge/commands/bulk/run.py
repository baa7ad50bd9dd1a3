"""`smsbridge send --csv FILE [--template T]`: every row checked, estimated, queued, then sent.

The rows are queued in the store as jobs below pages (history, the daily budget and account
pauses apply as to any SMS; an ambiguous send is never resent), then sent by a dispatcher of
this run's jobs only. A running daemon may send some of them too: each job goes out once.
A second run of the same file (and template) queues only the rows the first did not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import AsyncExitStack
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import structlog

import bridge.commands.bulk.rows as rows
import bridge.commands.bulk.sheet as sheet
import bridge.commands.history.source as source
from bridge.commands.common import EXIT_OK, EXIT_REFUSED, BadInputError, gateway, load
from bridge.commands.output import emit_json, emit_lines
from bridge.config.models import Config
from bridge.intake import StormSettings, limits
from bridge.metrics import Metrics
from bridge.outbox import Dispatcher, RetryPolicy, bulk
from bridge.plugin import PluginContext
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.models import OutgoingSms
from bridge.plugins.c123.output import C123Output
from bridge.runtime import SMS_OUTPUT
from bridge.store import Connection, Store, make_store

PROGRESS_EVERY = 0.2  # seconds between looks at the run's jobs (a daemon may send some)
# A job 'sending' this many gateway timeouts after its claim has no call alive: its sender
# died mid-call (a claim waits for a free slot a call or two at most).
STALE_TIMEOUTS = 3
BAR = 30


def _claim_size(client: C123Client) -> int:
    """Jobs the sender claims at once: one call's worth. A claimed job whose call never started
    is, after a crash, as ambiguous as one in flight (never resent), so claims stay small."""
    return client.limits.max_batch_numbers


def _estimate(client: C123Client, outgoing: list[OutgoingSms]) -> tuple[int, Decimal, str]:
    """Segments, cost and the calls the messages take (planned claim by claim, as they are
    sent), as a person reads them."""
    size = _claim_size(client)
    segments = sum(m.estimated_segments for m in outgoing)
    counts: dict[str, int] = {}
    for start in range(0, len(outgoing), size):
        for call in client.plan_checked(outgoing[start : start + size]):
            counts[call.action.value] = counts.get(call.action.value, 0) + 1
    calls = ", ".join(f"{n} {action}" for action, n in counts.items()) or "no calls"
    return segments, client.price * segments, calls


def _queued_before(config: Config, run: str) -> set[int]:
    """Rows an earlier run queued, read without creating or changing anything (a dry run)."""
    path = config.store.path
    if not path.exists():
        return set()
    try:
        with source.read_only(path) as conn:
            return bulk.queued_rows(conn, run)
    except source.StoreTooOldError:
        return set()  # no bulk table yet: nothing was queued by a run


def _confirm(cost: Decimal, threshold: Decimal, yes: bool, count: int) -> None:
    """Ask before an expensive run; without a terminal, --yes is the answer."""
    if yes or cost <= threshold:
        return
    question = f"{count} SMS, estimated {cost} yuan, above bulk.confirm_above ({threshold} yuan)"
    if not sys.stdin.isatty():
        raise BadInputError(f"{question}: nothing sent; run again with --yes to send")
    print(f"{question}. Send? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise BadInputError("not confirmed: nothing sent")


def _bar(progress: bulk.Progress, stream: TextIO) -> None:
    done = progress.settled + progress.held
    filled = BAR * done // max(progress.total, 1)
    stream.write(
        f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done}/{progress.total}  sent "
        f"{progress.sent}, failed {progress.failed + progress.unknown}, held {progress.held} "
    )
    stream.flush()


async def _send(
    config: Config, client: C123Client, store: Store, run: str, show: TextIO | None
) -> bulk.Progress:
    """Send the run's queued jobs until none moves without a person's help."""
    log = structlog.get_logger("smsbridge.bulk")
    dispatch = config.dispatch
    async with aiohttp.ClientSession() as http:
        output = C123Output(client.config, PluginContext(SMS_OUTPUT, http, log), client=client)
        dispatcher = Dispatcher(
            store,
            {SMS_OUTPUT: output},
            metrics=Metrics(),
            log=log,
            batch_size=_claim_size(client),
            concurrency=dispatch.concurrency,
            retry=RetryPolicy(
                ceiling=dispatch.backoff_max.total_seconds(),
                max_attempts=dispatch.max_attempts,
                max_hold=dispatch.max_hold.total_seconds(),
            ),
            rule=bulk.rule_of(run),
            stop_when_held=True,
        )
        dispatcher.start()
        stale = client.config.timeout.total.total_seconds() * STALE_TIMEOUTS
        try:
            while True:
                progress = await store.read(partial(bulk.progress, run=run))
                if show is not None:
                    _bar(progress, show)
                if not progress.moving:
                    return progress
                if progress.held and progress.waiting:
                    # The gateway waits on a top-up or the account: the rest wait with it.
                    await store.write(partial(bulk.hold_waiting, run=run))
                    continue
                if progress.sending and not progress.waiting:
                    # Left by a run that died mid-call? Settled unknown once surely dead.
                    now = time.time()
                    await store.write(
                        partial(bulk.settle_stale, run=run, before=now - stale, now=now)
                    )
                await asyncio.sleep(PROGRESS_EVERY)
        finally:
            if show is not None:
                show.write("\n")
            # Calls under way record their outcomes first; the rest stay queued for a re-run
            # (or a running daemon).
            await dispatcher.stop(client.config.timeout.total.total_seconds() + 5)


def _report(progress: bulk.Progress) -> list[str]:
    lines = [
        f"sent {progress.sent} of {progress.total}: {progress.segments} segment(s) billed, "
        f"cost {progress.cost}"
    ]
    if progress.held:
        lines.append(
            f"held {progress.held}: {'; '.join(progress.holds)} (they go out when the hold "
            "lifts: a running daemon sends them, or run this again)"
        )
    for row, reason in progress.failures:
        lines.append(f"NOT SENT row {row}: {reason}")
    return lines


async def cmd_bulk_send(args: argparse.Namespace) -> int:
    config = load(args.config)
    path: Path = args.csv
    if args.text is not None or args.at is not None:
        raise BadInputError("--csv takes the texts from the file: no text or --at with it")
    try:
        data = await asyncio.to_thread(path.read_bytes)
        table = sheet.read(data, args.encoding)
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except sheet.SheetError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    run = sheet.digest(data + b"\0" + (args.template or "").encode())
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(gateway(config))
        checked = rows.check_rows(table, client, config.contacts, args.template)
        if checked.problems:
            raise BadInputError(f"{path}: nothing sent:\n{checked.report()}")
        before = await asyncio.to_thread(_queued_before, config, run)
        todo = [m for m in checked.messages if m.row not in before]
        planned = zip(checked.messages, checked.outgoing, strict=True)
        segments, cost, calls = _estimate(client, [o for m, o in planned if m.row not in before])
        summary = {
            "file": str(path),
            "encoding": table.encoding,
            "run": bulk.rule_of(run),
            "rows": len(checked.messages),
            "queued_before": len(checked.messages) - len(todo),
            "to_send": len(todo),
            "calls": calls,
            "estimated_segments": segments,
            "estimated_cost": cost,
        }
        lines = [f"{path} ({table.encoding}): {len(checked.messages)} rows, all valid"]
        if before:
            lines.append(f"{len(before)} of them queued by an earlier run of this file")
        if todo:
            lines.append(
                f"{len(todo)} to send in {calls}: {segments} segment(s), estimated cost "
                f"{cost} (the gateway bills)"
            )
        if args.dry_run:
            if args.json:
                emit_json({**summary, "dry_run": True})
            else:
                emit_lines([*lines, "dry run: nothing sent"])
            return EXIT_OK
        if not args.json:
            emit_lines(lines)
        _confirm(cost, config.bulk.confirm_above, args.yes, len(todo))
        store = make_store(config.store.path, config.store.conninfo())
        await store.open()
        stack.push_async_callback(store.close)
        now = time.time()
        budget = StormSettings(
            daily_segment_budget=config.storm.daily_segment_budget,
            budget_zone=client.config.timezone,
        )

        def enqueue(conn: Connection) -> int | None:
            if limits.over_budget(conn, budget, [SMS_OUTPUT], segments, now):
                return None
            return bulk.queue(conn, run, SMS_OUTPUT, todo, now)

        queued = await store.write(enqueue)
        if queued is None:
            message = (
                f"held: {segments} segment(s) would pass today's budget "
                f"(storm.daily_segment_budget {budget.daily_segment_budget}); nothing queued"
            )
            if args.json:
                emit_json({**summary, "ok": False, "error": message})
            else:
                emit_lines([message])
            return EXIT_REFUSED
        # Run again after a hold: its rows try again now (a hold that stands holds them again).
        await store.write(partial(bulk.release_held, run=run, now=now))
        show = sys.stderr if sys.stderr.isatty() and not args.json else None
        progress = await _send(config, client, store, run, show)
    ok = progress.sent == progress.total
    if args.json:
        emit_json({**summary, "ok": ok, "result": _plain(progress)})
    else:
        emit_lines(_report(progress))
    return EXIT_OK if ok else EXIT_REFUSED


def _plain(progress: bulk.Progress) -> dict[str, Any]:
    return {
        "total": progress.total,
        "sent": progress.sent,
        "failed": progress.failed,
        "unknown": progress.unknown,
        "held": progress.held,
        "waiting": progress.waiting + progress.sending,
        "segments": progress.segments,
        "cost": progress.cost,
        "holds": list(progress.holds),
        "failures": [{"row": row, "reason": reason} for row, reason in progress.failures],
    }
