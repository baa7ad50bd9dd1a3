"""Escalation timelines: step delays, repeats, schedules asked at each step, empty schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.paging import (
    NobodyOnCall,
    Page,
    PolicyConfig,
    ScheduleConfig,
    escalation_timeline,
)
from bridge.rules.config import ContactConfig, Directory

CONTACTS = {
    name: ContactConfig(number=f"1510211{index:04}", name=name.title())
    for index, name in enumerate(["alice", "bob", "carol", "dave", "erin"])
}
GROUPS = {"leads": ["carol", "dave"], "everyone": ["alice", "bob", "carol", "dave", "erin"]}
DIRECTORY = Directory(CONTACTS, GROUPS)
SCHEDULES = {
    "primary": ScheduleConfig.model_validate(
        {
            "timezone": "Asia/Shanghai",
            "rotation": {
                "members": ["alice", "bob"],
                "shift": "1d",
                "handoff": "10:00",
                "start": "2026-12-07",
            },
        }
    ),
    "nights": ScheduleConfig.model_validate(
        {
            "timezone": "Asia/Shanghai",
            "rotation": {
                "members": ["erin"],
                "shift": "1d",
                "handoff": "00:00",
                "start": "2026-12-07",
                "hours": "22:00-06:00",
            },
        }
    ),
}
START = datetime(2026, 12, 8, 1, 55, tzinfo=UTC)  # 09:55 in Shanghai: alice until 10:00


def policy(**fields: Any) -> PolicyConfig:
    return PolicyConfig.model_validate(fields)


def summary(entries: list[Page | NobodyOnCall]) -> list[tuple[int, int, int, Any]]:
    return [
        (
            int(e.offset.total_seconds()) // 60,
            e.step,
            e.pass_index,
            [t.name for t in e.targets] if isinstance(e, Page) else f"nobody:{e.schedule}",
        )
        for e in entries
    ]


def test_steps_repeat_and_schedules_are_asked_at_each_step() -> None:
    """The issue's policy: primary at once, bob and the leads 5m later, two more passes."""
    ops = policy(
        steps=[
            {"notify": ["schedule:primary"], "after": "5m"},
            {"notify": ["bob", "group:leads"], "after": "5m"},
        ],
        repeat=2,
    )
    timeline = escalation_timeline(ops, DIRECTORY, SCHEDULES, START)
    assert summary(timeline) == [
        (0, 0, 0, ["Alice"]),
        (5, 1, 0, ["Bob", "Carol", "Dave"]),
        (10, 0, 1, ["Bob"]),  # 10:05 in Shanghai: the schedule has handed off to bob
        (15, 1, 1, ["Bob", "Carol", "Dave"]),
        (20, 0, 2, ["Bob"]),
        (25, 1, 2, ["Bob", "Carol", "Dave"]),
    ]
    first = timeline[1]
    assert isinstance(first, Page)
    assert [t.via for t in first.targets] == ["bob", "group:leads", "group:leads"]
    assert first.targets[0].number == CONTACTS["bob"].number


def test_an_empty_schedule_is_noted_and_the_next_step_comes_at_once() -> None:
    """Nobody on nights at 09:55: a warning, and the next step pages without waiting."""
    nights = policy(
        steps=[
            {"notify": ["schedule:nights"]},
            {"notify": ["group:leads"], "after": "10m"},
            {"notify": ["everyone"], "after": "10m"},
        ]
    )
    assert summary(escalation_timeline(nights, DIRECTORY, SCHEDULES, START)) == [
        (0, 0, 0, "nobody:nights"),
        (0, 1, 0, ["Carol", "Dave"]),
        (10, 2, 0, ["Alice", "Bob", "Carol", "Dave", "Erin"]),
    ]


def test_a_step_with_someone_left_still_waits() -> None:
    """An empty schedule beside a contact: the warning, the page, and the usual delay."""
    mixed = policy(
        steps=[{"notify": ["schedule:nights", "bob"]}, {"notify": ["carol"], "after": "3m"}]
    )
    assert summary(escalation_timeline(mixed, DIRECTORY, SCHEDULES, START)) == [
        (0, 0, 0, "nobody:nights"),
        (0, 0, 0, ["Bob"]),
        (3, 1, 0, ["Carol"]),
    ]


def test_repeat_needs_a_wait_between_passes() -> None:
    """With repeat and no `after` on the first step, the next pass would page at once."""
    with pytest.raises(ValueError, match="first step needs 'after'"):
        policy(steps=[{"notify": ["bob"]}, {"notify": ["carol"], "after": "5m"}], repeat=1)


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        escalation_timeline(
            policy(steps=[{"notify": "bob"}]), DIRECTORY, SCHEDULES, datetime(2026, 1, 1)
        )


ENTRIES = ["alice", "bob", "group:leads", "group:everyone", "schedule:primary", "schedule:nights"]


@st.composite
def policies(draw: st.DrawFn) -> PolicyConfig:
    steps = [
        {
            "notify": draw(st.lists(st.sampled_from(ENTRIES), min_size=1, max_size=3)),
            "after": f"{draw(st.integers(0, 120))}m",
        }
        for _ in range(draw(st.integers(1, 4)))
    ]
    repeat = draw(st.integers(0, 3))
    if repeat:
        steps[0]["after"] = f"{draw(st.integers(1, 120))}m"
    return policy(steps=steps, repeat=repeat)


def reach(entry: str) -> int:
    """The most numbers one entry can page at once."""
    if entry.startswith("schedule:"):
        return 1  # every member of these schedules is one contact
    return len(DIRECTORY.resolve([entry.removeprefix("group:")]))


@settings(max_examples=300, deadline=None)
@given(policies(), st.integers(0, 14 * 24 * 60))
def test_pages_are_bounded_and_follow_the_delays(ops: PolicyConfig, minutes: int) -> None:
    """Pages <= (numbers the steps reach) x (repeat + 1); offsets follow `after`, skipping a
    step's wait only after a step that paged nobody."""
    start = START + timedelta(minutes=minutes)
    timeline = escalation_timeline(ops, DIRECTORY, SCHEDULES, start)
    pages = [e for e in timeline if isinstance(e, Page)]
    bound = sum(sum(reach(e) for e in step.notify) for step in ops.steps) * (ops.repeat + 1)
    assert sum(len(p.targets) for p in pages) <= bound
    # At most one page per step and pass, each number once in it.
    keys = [(p.pass_index, p.step) for p in pages]
    assert len(keys) == len(set(keys))
    assert all(len({t.number for t in p.targets}) == len(p.targets) for p in pages)
    # Offsets: each step `after` the previous step, unless that one paged nobody.
    paged = {(p.pass_index, p.step): p.offset for p in pages}
    offset, previous_paged = timedelta(), False
    order = [(n, s) for n in range(ops.repeat + 1) for s in range(len(ops.steps))]
    for key in order:
        if previous_paged:
            offset += ops.steps[key[1]].after
        if key in paged:
            assert paged[key] == offset
        previous_paged = key in paged
    assert [e.offset for e in timeline] == sorted(e.offset for e in timeline)
