"""Incidents: one per rule and alert group, global numbers, acknowledgement, per-number codes."""

from __future__ import annotations

import sqlite3

import pytest

import bridge.intake.conversations as conversations
import bridge.paging.incidents as incidents
from bridge.events import Conversation
from bridge.paging.incidents import CODE_QUARANTINE, Change, State
from bridge.store import timers
from tests.paging.desk import MINUTE, NUMBER, T0, Desk

THREAD = Conversation("slack", "C1", "1700.1")


async def test_incident_numbers_are_global_and_never_reused(desk: Desk) -> None:
    first, _ = await desk.open(T0, group="db1")
    second, _ = await desk.open(T0, group="db2")
    assert (first.incident.id, second.incident.id) == (1, 2)
    await desk.call(incidents.resolve, first.incident.id, T0 + MINUTE)
    reopened, started = await desk.open(T0 + 2 * MINUTE, group="db1")
    assert reopened.change is Change.OPENED
    assert reopened.incident.id == 3
    assert started is not None
    assert started.pages[0].name == "Alice"
    listed = await desk.read(incidents.open_incidents)
    assert [incident.id for incident in listed] == [2, 3]


async def test_an_incident_keeps_its_alert_group_thread_and_policy(desk: Desk) -> None:
    opened, _ = await desk.open(T0, conversation=THREAD)
    incident = opened.incident
    assert (incident.rule, incident.group_key, incident.policy) == ("critical", "db1", "ops")
    assert incident.conversation == THREAD
    assert incident.state is State.TRIGGERED
    assert incident.report_timeout == 3 * MINUTE
    assert incident.ack_timeout == 30 * MINUTE
    found = await desk.call(incidents.find_open, "critical", "db1")
    assert found == (await desk.call(incidents.get, incident.id))


async def test_acknowledging_again_only_makes_it_last_longer(desk: Desk) -> None:
    opened, _ = await desk.open(T0)
    number = opened.incident.id
    first = await desk.call(incidents.acknowledge, number, "Alice", T0 + MINUTE)
    assert first.change is Change.ACKNOWLEDGED
    assert first.previous is State.TRIGGERED
    assert [p.name for p in first.paged] == ["Alice"]
    assert first.incident.acked_until == T0 + 31 * MINUTE
    shorter = await desk.call(
        incidents.acknowledge, number, "Bob", T0 + 2 * MINUTE, T0 + 10 * MINUTE
    )
    assert shorter.change is Change.UNCHANGED
    assert shorter.incident.acked_until == T0 + 31 * MINUTE
    renewed = await desk.call(incidents.acknowledge, number, "Bob", T0 + 2 * MINUTE)
    assert renewed.change is Change.ACK_EXTENDED  # the policy's 30 minutes, from now
    assert renewed.incident.acked_until == T0 + 32 * MINUTE
    longer = await desk.call(incidents.acknowledge, number, "Bob", T0 + 2 * MINUTE, T0 + 7200)
    assert longer.change is Change.ACK_EXTENDED
    assert longer.incident.acked_by == "Alice"  # who took it first stays
    assert longer.incident.acked_until == T0 + 7200
    timer = await desk.read(lambda c: timers.get(c, incidents.ACK_TIMER, str(number)))
    assert timer is not None
    assert timer.due_at == T0 + 7200


async def test_a_closed_incident_takes_no_more_transitions(desk: Desk) -> None:
    opened, _ = await desk.open(T0)
    number = opened.incident.id
    closed = await desk.call(incidents.resolve, number, T0 + MINUTE, by="Bob")
    assert closed.change is Change.RESOLVED
    assert closed.incident.resolved_by == "Bob"
    assert closed.incident.resolved_at == T0 + MINUTE
    again = await desk.call(incidents.resolve, number, T0 + 2 * MINUTE)
    assert again.change is Change.UNCHANGED
    assert not again.changed
    late = await desk.call(incidents.acknowledge, number, "Alice", T0 + 2 * MINUTE)
    assert late.change is Change.UNCHANGED
    assert late.incident.state is State.RESOLVED
    with pytest.raises(LookupError, match="#99"):
        await desk.call(incidents.acknowledge, 99, "Alice", T0)


async def test_each_number_counts_its_own_codes_shared_with_chat_codes(desk: Desk) -> None:
    alice = NUMBER["alice"]

    def chat_sms(conn: sqlite3.Connection) -> int:  # holds code 1 for a day
        return conversations.record_conversation(conn, alice, 7, None, THREAD, T0, 86400, 1)

    await desk.write(chat_sms)
    _, first = await desk.open(T0, group="db1")
    _, second = await desk.open(T0, group="db2")
    assert first is not None
    assert second is not None
    assert [p.code for p in first.pages + second.pages] == [2, 3]
    # Bob's number has its own counter.
    bob = await desk.tick(T0 + 5 * MINUTE)
    assert sorted((p.name, p.code) for r in bob for p in r.pages) == [("Bob", 1), ("Bob", 2)]
    # A chat SMS now gets the next free code: the incidents hold theirs.
    taken = await desk.read(lambda c: conversations.next_code(c, alice, T0 + 6 * MINUTE))
    assert taken[0] == 4


async def test_a_resolved_incident_frees_its_code_after_a_day(desk: Desk) -> None:
    alice = NUMBER["alice"]
    opened, started = await desk.open(T0)
    assert started is not None
    assert started.pages[0].code == 1
    await desk.call(incidents.resolve, opened.incident.id, T0 + MINUTE)
    within = await desk.read(lambda c: conversations.next_code(c, alice, T0 + 2 * MINUTE))
    assert within[0] == 2  # still held: a late `1a` must not land on another incident
    after = T0 + MINUTE + CODE_QUARANTINE
    assert (await desk.read(lambda c: conversations.next_code(c, alice, after)))[0] == 1
    _, reused = await desk.open(after, group="db2")
    assert reused is not None
    assert reused.pages[0].code == 1
