"""The supervised loops (storm flushes, paging timers) and the schedule of periodic work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from functools import partial
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from bridge.config.oncall import OncallConfig
from bridge.intake import PAGING, Pipeline, storm
from bridge.runtime.settings import SMS_OUTPUT
from bridge.runtime.supervisor import Run, Supervisor
from bridge.store import Connection, Store, timers

Clock = Callable[[], float]
# Periodic work: its task name, the work, its period in seconds, and whether it runs at once.
Periodic = tuple[str, Run, float, bool]
Fence = Callable[[Connection], None] | None

STORM_TASK = "storm"
PAGING_TASK = "paging"
PROCESSOR_TASK = "processor"
# What only the processor leader runs, in the order it stops.
LEADING_TASKS = (PAGING_TASK, STORM_TASK, PROCESSOR_TASK)


def start_leading(
    supervisor: Supervisor,
    leading: Callable[[Run], Run],
    processor: Run,
    storm_loop: Callable[..., Awaitable[None]],
    paging_loop: Callable[..., Awaitable[None]],
    fence: Fence,
) -> None:
    """Start the processor and its timer loops, each running only while this instance leads;
    the loops' transactions check the leader's lease (`fence`) as the processor's do."""
    supervisor.start(PROCESSOR_TASK, leading(processor))
    supervisor.start(STORM_TASK, leading(partial(storm_loop, fence=fence)))
    supervisor.start(PAGING_TASK, leading(partial(paging_loop, fence=fence)))


async def storm_loop(
    pipeline: Pipeline, store: Store, clock: Clock, wake: asyncio.Event, fence: Fence = None
) -> None:
    """Flush grouped alerts and held-back summaries when they come due (`fence`: the
    processor leader's lease check, run first in each flush's transaction)."""
    while True:
        # Cleared first, so a wake-up that comes during the flush is not lost. Only storm
        # state wakes this loop (STORM), not every send, so it cannot wake itself in a spin.
        wake.clear()
        await storm.flush_due(pipeline, fence)  # a failure is the supervisor's: logged, restarted
        due = await store.read(partial(storm.next_due, pipeline))
        timeout = None if due is None else max(due - clock(), 0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


async def paging_loop(
    pipeline: Pipeline,
    store: Store,
    clock: Clock,
    wake: asyncio.Event,
    log: Any,
    fence: Fence = None,
) -> None:
    """Fire escalation timers when they come due: next steps, report and ack timeouts."""
    while True:
        wake.clear()  # first, so a wake-up during the firing is not lost
        if await fire_paging_timers(pipeline, store, clock, log, fence):
            continue  # a full batch may leave more due
        due = await store.read(timers.next_due)
        timeout = None if due is None else max(due - clock(), 0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


async def fire_paging_timers(
    pipeline: Pipeline, store: Store, clock: Clock, log: Any, fence: Fence = None
) -> bool:
    """One transaction of due timers; True when it was a full batch. Each timer's effect and
    its removal commit together, after `fence` passed in the same transaction: exactly once."""
    now = clock()
    touched: set[str] = set()
    if pipeline.paging is None:
        # Paging is an optional part, loaded only when it has work. Without `oncall` (never
        # set, or dropped by a reload) a timer an earlier config left still fires, and finds
        # nobody new to page.
        due = await store.read(timers.next_due)
        if due is None or due > now:
            return False
    from bridge.paging import Pager

    pager = pipeline.paging
    if not isinstance(pager, Pager):
        pager = Pager(pipeline, OncallConfig(), pipeline.directory, SMS_OUTPUT)

    def work(conn: Connection) -> bool:
        if fence is not None:
            fence(conn)
        touched.clear()
        return pager.fire_due(conn, now, touched)

    try:
        full = await store.write(work)
    except BaseException:
        pipeline.notes.clear()
        raise
    pipeline.flush_log(log)
    touched.discard(PAGING)  # its own timers are read again below: no self wake-up
    pipeline.wake(touched)
    return full


def schedule(
    supervisor: Supervisor,
    periodic: Sequence[Periodic],
    stack: AsyncExitStack,
    stop_tasks: Callable[[list[str]], Awaitable[None]],
) -> None:
    """APScheduler is the clock: its jobs only trigger; the work runs supervised."""
    scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    for name, work, every, at_once in periodic:
        supervisor.start_triggered(name, work)
        first = datetime.now(UTC) if at_once else None
        scheduler.add_job(
            _trigger, "interval", args=[supervisor, name], seconds=every, next_run_time=first
        )
    scheduler.start()
    stack.push_async_callback(
        _stop_scheduler, scheduler, [name for name, _, _, _ in periodic], stop_tasks
    )


async def _trigger(supervisor: Supervisor, name: str) -> None:
    # A coroutine, so APScheduler runs it on the loop (a plain function goes to a thread).
    supervisor.trigger(name)


async def _stop_scheduler(
    scheduler: AsyncIOScheduler,
    names: list[str],
    stop_tasks: Callable[[list[str]], Awaitable[None]],
) -> None:
    scheduler.pause()
    # A poll under way has stored its raw answer first, but let it finish processing.
    await stop_tasks(names)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0)
