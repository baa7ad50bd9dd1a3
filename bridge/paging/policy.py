"""An escalation policy unrolled: who is paged when, if nobody acknowledges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.config.oncall import GROUP_PREFIX, SCHEDULE_PREFIX, PolicyConfig, ScheduleConfig
from bridge.paging.schedules import who_is_on_call
from bridge.rules import Directory, as_utc


@dataclass(frozen=True, slots=True)
class Target:
    """One number a step pages, the name to show for it, and the `notify` entry that reached it."""

    name: str
    number: str
    via: str


@dataclass(frozen=True, slots=True)
class Page:
    """Step `step` of pass `pass_index` pages `targets` at `offset` from the start."""

    offset: timedelta
    step: int
    pass_index: int
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class NobodyOnCall:
    """A schedule a step names has nobody on call at `offset`."""

    offset: timedelta
    step: int
    pass_index: int
    schedule: str


TimelineEntry = Page | NobodyOnCall


def _step_targets(
    notify: list[str],
    directory: Directory,
    schedules: Mapping[str, ScheduleConfig],
    at: datetime,
) -> tuple[list[Target], list[str]]:
    """The step's numbers (each once, first entry wins) and the schedules with nobody on call."""
    targets: dict[str, Target] = {}
    empty: list[str] = []
    for entry in notify:
        if entry.startswith(SCHEDULE_PREFIX):
            name = entry.removeprefix(SCHEDULE_PREFIX)
            names = who_is_on_call(schedules[name], at)
            if not names:
                empty.append(name)
        else:
            names = [entry.removeprefix(GROUP_PREFIX)]
        for recipient in directory.resolve(names):
            targets.setdefault(recipient.number, Target(recipient.name, recipient.number, entry))
    return list(targets.values()), empty


def escalation_timeline(
    policy: PolicyConfig,
    directory: Directory,
    schedules: Mapping[str, ScheduleConfig],
    start: datetime,
) -> list[TimelineEntry]:
    """Every page of an incident opened at `start` (aware) that nobody acknowledges, in order.

    Each step comes its `after` from the previous one; the first step of the first pass at
    `start`, and on each of the `repeat` passes after it, its `after` from the last step. A step
    that finds nobody to page (its schedules empty) is noted and the next step comes at once. So
    an incident gets at most (numbers the steps reach) x (repeat + 1) pages. Schedules are asked at
    the time of each step. Raises UnresolvedError for names a checked config cannot hold.
    """
    start = as_utc(start)
    entries: list[TimelineEntry] = []
    offset = timedelta()
    at_once = True  # the first page goes at the start
    for pass_index in range(policy.repeat + 1):
        for number, step in enumerate(policy.steps):
            if not at_once:
                offset += step.after
            targets, empty = _step_targets(step.notify, directory, schedules, start + offset)
            entries.extend(NobodyOnCall(offset, number, pass_index, name) for name in empty)
            if targets:
                entries.append(Page(offset, number, pass_index, tuple(targets)))
            # Nobody paged: nobody to wait for, so the next step comes at once.
            at_once = not targets
    return entries
