"""Runs the daemon's background tasks: a failure is logged, counted and restarted with backoff."""

from __future__ import annotations

import asyncio
import enum
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from bridge.logging import SCRUBBER

Run = Callable[[], Awaitable[None]]
# Long enough for a reason a person can act on, short enough for a /readyz answer.
MAX_ERROR_TEXT = 300


class TaskState(enum.StrEnum):
    RUNNING = "running"
    FAILING = "failing"  # failed and has not run well since: waiting to restart, or on probation
    DEAD = "dead"  # failed too often in a row: not restarted again
    STOPPED = "stopped"  # returned, or was stopped


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a failed task is restarted, and when it counts as well again."""

    first: float = 0.5  # seconds before the first restart; doubled at every failure in a row
    ceiling: float = 30.0
    healthy_after: float = 10.0  # a restarted task that runs this long without failing is well
    give_up_after: int = 20  # failures in a row (about 8 minutes at the defaults): dead

    def delay(self, failures: int) -> float:
        # The exponent is bounded: a float power overflows long before failures stop coming.
        return min(self.ceiling, self.first * 2.0 ** min(max(failures - 1, 0), 64))


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What one supervised task is doing, for /readyz and the watchdog."""

    state: TaskState
    error: str = ""  # the last failure, while it is failing or dead
    restarts: int = 0


@dataclass(eq=False, slots=True)
class _Task:
    name: str
    run: Run
    trigger: asyncio.Event | None  # set for work that runs once per trigger
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    failures: int = 0  # in a row, since it last ran well
    restarts: int = 0
    error: str = ""
    running_since: float | None = None  # None while waiting to restart
    dead: bool = False


def _describe(exc: BaseException) -> str:
    """An exception as one secrets-free line: its type and message."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return SCRUBBER.scrub(" ".join(text.split()))[:MAX_ERROR_TEXT]


class Supervisor:
    """Named long-lived tasks, restarted when they fail, with a status for each.

    A task is either a loop that runs until stopped (`start`) or work that runs once per
    `trigger` (`start_triggered`): a scheduler only triggers, the work runs here, so no
    exception disappears into the scheduler. A loop that fails is started again after the
    backoff; work that fails is run again after the backoff, without waiting for a trigger.
    """

    def __init__(
        self,
        *,
        log: Any,
        restarts: Counter | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.backoff = backoff or Backoff()
        self._restarts = restarts
        self._clock = clock
        self._tasks: dict[str, _Task] = {}

    # --- starting ------------------------------------------------------------------------------

    def start(self, name: str, run: Run) -> asyncio.Task[None]:
        """Run `run()` under supervision; returns the task that runs (and reruns) it.

        Cancelling the returned task stops it for good; so does `run()` returning.
        """
        return self._add(_Task(name, run, trigger=None))

    def start_triggered(self, name: str, work: Run) -> None:
        """Run `work()` once per `trigger(name)`; triggers during a run coalesce into one."""
        self._add(_Task(name, work, trigger=asyncio.Event()))

    def trigger(self, name: str) -> None:
        """Ask a triggered task to run its work (again)."""
        task = self._tasks.get(name)
        if task is not None and task.trigger is not None:
            task.trigger.set()

    def _add(self, task: _Task) -> asyncio.Task[None]:
        previous = self._tasks.get(task.name)
        if previous is not None and previous.runner is not None and not previous.runner.done():
            raise ValueError(f"a task named {task.name!r} is already running")
        self._tasks[task.name] = task
        runner = asyncio.create_task(self._supervise(task), name=task.name)
        task.runner = runner
        runner.add_done_callback(lambda _: self._forget(task))
        return runner

    def _forget(self, task: _Task) -> None:
        # A dead task stays listed: it is what /readyz and the watchdog report.
        if not task.dead and self._tasks.get(task.name) is task:
            del self._tasks[task.name]

    # --- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, TaskStatus]:
        """Every task by name."""
        return {name: self._status(task) for name, task in self._tasks.items()}

    def problems(self) -> dict[str, str]:
        """Task name -> what is wrong, for the tasks that are failing or dead."""
        return {
            name: f"{status.state.value}: {status.error}"
            for name, status in self.status().items()
            if status.state in (TaskState.FAILING, TaskState.DEAD)
        }

    def dead(self) -> list[str]:
        """Names of the tasks that will not be restarted again."""
        return sorted(name for name, task in self._tasks.items() if task.dead)

    def _status(self, task: _Task) -> TaskStatus:
        if task.dead:
            return TaskStatus(TaskState.DEAD, task.error, task.restarts)
        if task.runner is None or task.runner.done():
            return TaskStatus(TaskState.STOPPED, restarts=task.restarts)
        if task.failures and not self._proven(task):
            return TaskStatus(TaskState.FAILING, task.error, task.restarts)
        return TaskStatus(TaskState.RUNNING, restarts=task.restarts)

    def _proven(self, task: _Task) -> bool:
        """A restarted loop has run long enough without failing to count as well again."""
        since = task.running_since
        return (
            task.trigger is None
            and since is not None
            and self._clock() - since >= self.backoff.healthy_after
        )

    # --- running -----------------------------------------------------------------------------

    async def _supervise(self, task: _Task) -> None:
        try:
            while not task.stop_requested.is_set():
                task.running_since = self._clock()
                try:
                    await (self._triggered(task) if task.trigger is not None else task.run())
                    return  # it finished: a loop that returns is done, not restarted
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # stopped from outside
                    restart = self._failed(task)  # a stray cancellation from inside the work
                except Exception:
                    restart = self._failed(task)
                if not restart or not await self._backoff(task):
                    return
                if task.trigger is not None:
                    task.trigger.set()  # failed work is tried again, not left to the next trigger
        finally:
            task.running_since = None

    async def _triggered(self, task: _Task) -> None:
        trigger = task.trigger
        assert trigger is not None
        while True:
            await trigger.wait()
            if task.stop_requested.is_set():
                return
            trigger.clear()
            await task.run()
            task.failures, task.error = 0, ""

    def _failed(self, task: _Task) -> bool:
        """Log (with the traceback) and count the failure being handled; False: do not restart."""
        exc = sys.exc_info()[1]
        assert exc is not None
        if self._proven(task):
            task.failures = 0
        task.failures += 1
        task.error = _describe(exc)
        task.running_since = None
        if task.failures >= self.backoff.give_up_after:
            task.dead = True
            self.log.exception("task_failed", task=task.name, failures=task.failures)
            self.log.error("task_dead", task=task.name, failures=task.failures, error=task.error)
            return False
        delay = self.backoff.delay(task.failures)
        self.log.exception(
            "task_failed", task=task.name, failures=task.failures, restart_in=round(delay, 2)
        )
        if self._restarts is not None:
            self._restarts.labels(task.name).inc()
        task.restarts += 1
        return True

    async def _backoff(self, task: _Task) -> bool:
        """Wait before a restart; False when the task was stopped meanwhile."""
        try:
            async with asyncio.timeout(self.backoff.delay(task.failures)):
                await task.stop_requested.wait()
        except TimeoutError:
            return True
        return False

    # --- stopping ----------------------------------------------------------------------------

    async def stop(self, names: Iterable[str] | None = None, *, grace: float = 5.0) -> None:
        """Stop tasks (all by default): triggered work under way may finish within `grace`,
        loops are cancelled at once; whatever still runs after `grace` is cancelled."""
        wanted = None if names is None else set(names)
        tasks = [t for t in self._tasks.values() if wanted is None or t.name in wanted]
        runners: list[asyncio.Task[None]] = []
        for task in tasks:
            task.stop_requested.set()
            if task.runner is None or task.runner.done():
                continue
            runners.append(task.runner)
            if task.trigger is not None:
                task.trigger.set()  # wakes it to see the stop; a run under way finishes first
            else:
                task.runner.cancel()
        if runners:
            _, late = await asyncio.wait(runners, timeout=grace)
            for runner in late:
                runner.cancel()
            if late:
                self.log.warning("task_stop_timeout", tasks=sorted(r.get_name() for r in late))
            await asyncio.gather(*runners, return_exceptions=True)
        for task in tasks:
            if self._tasks.get(task.name) is task:
                del self._tasks[task.name]
