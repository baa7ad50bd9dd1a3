"""SMS replies acting on incidents: codes, bare commands, `ack all`, Chinese, `ack 2h`, help."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from functools import partial
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import bridge.paging.actions as actions
import bridge.paging.incidents as incidents
from bridge.paging.actions import Result
from bridge.paging.incidents import Change, State
from bridge.paging.replies import Action, Command
from bridge.store import SqliteStore
from tests.paging.desk import MINUTE, NUMBER, T0, Desk, paged_names

ALICE = NUMBER["alice"]


async def reply(desk: Desk, text: str, now: float, mobile: str = ALICE) -> actions.Outcome:
    return await desk.call(actions.apply_reply, mobile, text, now)


async def two_incidents(desk: Desk) -> tuple[int, int]:
    first, _ = await desk.open(T0, group="db1")
    second, _ = await desk.open(T0 + 1, group="db2")
    return first.incident.id, second.incident.id


async def state_of(desk: Desk, number: int) -> State:
    incident = await desk.call(incidents.get, number)
    assert incident is not None
    return incident.state


async def test_a_code_acknowledges_the_incident_whose_page_carried_it(desk: Desk) -> None:
    first, second = await two_incidents(desk)
    outcome = await reply(desk, "1a", T0 + MINUTE)
    assert outcome.result is Result.DONE
    (acked,) = outcome.transitions
    assert acked.incident.id == first
    assert acked.change is Change.ACKNOWLEDGED
    assert acked.by == "Alice"
    assert outcome.answer == f"acknowledged #{first} DiskFull db1"
    assert await state_of(desk, second) is State.TRIGGERED
    # The other spellings of the same command, full-width and Chinese included.
    for text in ("a2", "２Ａ", "ack 2", "2 确认"):
        again = await reply(desk, text, T0 + 2 * MINUTE)
        assert [t.incident.id for t in again.transitions] == [second], text


async def test_bare_commands_act_on_the_newest_open_incident_paged(desk: Desk) -> None:
    first, second = await two_incidents(desk)
    closed = await reply(desk, "关闭", T0 + MINUTE)
    assert [t.incident.id for t in closed.transitions] == [second]
    assert closed.transitions[0].change is Change.RESOLVED
    acked = await reply(desk, "收到", T0 + 2 * MINUTE)  # the newest still open
    assert [t.incident.id for t in acked.transitions] == [first]
    nothing = await reply(desk, "close", T0 + 3 * MINUTE, mobile=NUMBER["carol"])
    assert nothing.result is Result.NOTHING_OPEN
    assert nothing.answer == "No open incident was paged to you"


async def test_ack_all_acknowledges_every_open_incident_paged_to_the_number(desk: Desk) -> None:
    first, second = await two_incidents(desk)
    outcome = await reply(desk, "ACK ALL!", T0 + MINUTE)
    assert sorted(t.incident.id for t in outcome.transitions) == [first, second]
    assert {await state_of(desk, n) for n in (first, second)} == {State.ACKNOWLEDGED}


async def test_ack_with_a_duration_asks_for_a_silence_that_long(desk: Desk) -> None:
    first, _ = await two_incidents(desk)
    outcome = await reply(desk, "1a 2h", T0 + MINUTE)
    assert outcome.command == Command(Action.ACK, 1, silence=timedelta(hours=2))
    (silence,) = outcome.silences
    assert silence.incident.id == first
    assert silence.duration == timedelta(hours=2)
    assert outcome.transitions[0].incident.acked_until == T0 + MINUTE + 7200


async def test_escalate_pages_the_next_step_now(desk: Desk) -> None:
    await desk.open(T0)
    outcome = await reply(desk, "1e", T0 + MINUTE)
    (step,) = outcome.escalations
    assert paged_names(step) == ["Bob"]
    assert outcome.answer == "escalated #1: Bob"
    # Bob answers his own page by its code on his number.
    bob = await reply(desk, "1a", T0 + 2 * MINUTE, mobile=NUMBER["bob"])
    assert bob.transitions[0].by == "Bob"


async def test_a_late_code_for_a_resolved_incident_says_so(desk: Desk) -> None:
    first, _ = await two_incidents(desk)
    await desk.call(incidents.resolve, first, T0 + MINUTE)
    late = await reply(desk, "1a", T0 + 2 * MINUTE)
    assert late.result is Result.DONE
    assert not late.transitions[0].changed
    assert late.answer == f"#{first} is already resolved"
    gone = await reply(desk, "1a", T0 + MINUTE + incidents.CODE_QUARANTINE)
    assert gone.result is Result.UNKNOWN_CODE
    assert gone.answer == "No open page has code 1"
    assert (await reply(desk, "7c", T0 + 2 * MINUTE)).result is Result.UNKNOWN_CODE


async def test_anything_else_is_not_a_command(desk: Desk) -> None:
    await desk.open(T0)
    for text in ("ok thanks", "1a please", "ack 30s", "close all"):
        outcome = await reply(desk, text, T0 + MINUTE)
        assert outcome.result is Result.NOT_A_COMMAND, text
    assert await state_of(desk, 1) is State.TRIGGERED


async def test_help_goes_only_to_numbers_paged_and_a_few_times_a_day(desk: Desk) -> None:
    carol = NUMBER["carol"]
    assert not await desk.call(actions.may_help, ALICE, T0, 3)  # never paged
    await desk.open(T0)
    answers = [await desk.call(actions.may_help, ALICE, T0 + i, 3) for i in range(5)]
    assert answers == [True, True, True, False, False]
    assert not await desk.call(actions.may_help, carol, T0, 3)
    assert not await desk.call(actions.may_help, ALICE, T0 + 43200, 3)  # used up for the day
    # A day on, answers are allowed again, but only to a number paged within the day.
    assert not await desk.call(actions.may_help, ALICE, T0 + 86400 + 10, 3)  # page a day old
    await desk.open(T0 + 86400, group="db9")
    assert await desk.call(actions.may_help, ALICE, T0 + 86400 + 10, 3)


REPLIES = st.one_of(
    st.text(max_size=12),
    st.builds(
        "".join,
        st.lists(
            st.sampled_from(["1", "2", "7", "a", "c", "e", " ", "ack", "all", "确认", "2h", "！"])
        ),
    ),
)


async def _any_reply(folder: Path, texts: list[str]) -> None:
    store = SqliteStore(folder / "s.db", synchronous="OFF")
    await store.open()
    desk = Desk(store, partial(SqliteStore, folder / "s.db", synchronous="OFF"))
    await two_incidents(desk)
    now = T0 + MINUTE
    for text in texts:
        before = await desk.read(lambda c: c.execute("SELECT * FROM incidents").fetchall())
        outcome = await reply(desk, text, now)
        after = await desk.read(lambda c: c.execute("SELECT * FROM incidents").fetchall())
        if outcome.result is not Result.DONE:
            assert [tuple(r) for r in before] == [tuple(r) for r in after], text
            assert not outcome.transitions
            assert not outcome.escalations
        else:
            assert outcome.command is not None
            assert outcome.answer, text
            event("command")
        now += 1
    await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(REPLIES, min_size=1, max_size=6))
def test_any_reply_acts_only_when_it_is_a_command(texts: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_any_reply(Path(folder), texts))
