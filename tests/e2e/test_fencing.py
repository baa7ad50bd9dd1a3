"""Fencing on PostgreSQL: the account's poller is stopped (SIGSTOP) with a read's answer on its
way and stays stopped past its lease; another instance takes over and polls. When the stopped
one resumes, the answer it then holds is never stored or acted on."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
    SimulatorSettings,
)
from tests.e2e.instances import Instance, start

OPS = "13900000999"
ALICE = "15102110086"
BULK = 20_000


def config_text(url: str, gateway: str) -> str:
    return f"""
server: {{listen: "127.0.0.1:0"}}
store: {{url: "{url}"}}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 1s, reports: 1h, balance: 1h}}
contacts:
  ops: "{OPS}"
rules:
  - name: replies
    match: {{kind: reply}}
    sms: {{to: [ops], repeat_interval: 0s, template: "reply {{{{ text }}}}"}}
"""


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(report_delay=0, rate_limit=None)) as sim:
        yield sim


async def holder(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            """SELECT holder FROM leases WHERE name = %s
               AND expires_at > extract(epoch from clock_timestamp())""",
            (f"poller:{DEFAULT_ACCOUNT}",),
        )
        row = await cursor.fetchone()
    return "" if row is None else str(row[0])


async def stored(url: str, text: str) -> int:
    """Raw answers and inbox chunks that carry `text`."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            """SELECT (SELECT count(*) FROM raw_polls WHERE position(%s in body) > 0)
                    + (SELECT count(*) FROM inbox WHERE position(%s in body) > 0)""",
            (text.encode(), text.encode()),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_stopped_pollers_late_answer_is_never_stored(
    tmp_path: Path, simulator: Simulator, pg_url: str
) -> None:
    config = tmp_path / "smsbridge.yaml"
    config.write_text(config_text(pg_url, simulator.url))
    state = simulator.state
    account = state.account()
    instances: list[Instance] = [await start(config), await start(config)]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not (leader_id := await holder(pg_url)):
            assert loop.time() < deadline
            await asyncio.sleep(0.1)
        leader = next(i for i in instances if i.id == leader_id)
        other = next(i for i in instances if i.id != leader_id)
        # The next read hands the reply out and answers 0.3 s later: the leader is stopped
        # meanwhile, so the answer waits in its socket while its lease runs out.
        state.add_fault(Fault(FaultKind.HOLD, action=Action.GET_REPLY, seconds=0.3))
        state.inject_reply(ALICE, "read-by-the-stopped-one")
        await state.wait_for(lambda s: not account.replies and account.reads_in_flight == 1)
        leader.proc.send_signal(signal.SIGSTOP)
        try:
            while await holder(pg_url) != other.id:  # the lease passes on by itself
                assert loop.time() < deadline + 10, "no other instance took the lease"
                await asyncio.sleep(0.1)
            calls = state.calls[Action.GET_REPLY.value]
            await state.wait_for(lambda s: s.calls[Action.GET_REPLY.value] > calls)
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        # The resumed ex-leader has the answer in hand now: give it time to try to keep it.
        state.inject_reply(ALICE, "read-by-the-new-poller")
        await state.wait_for(
            lambda s: any(m.content == "reply read-by-the-new-poller" for m in s.messages),
            timeout=15,
        )
        await asyncio.sleep(1.0)  # nothing to await: a late store would have happened by now
        assert await stored(pg_url, "read-by-the-stopped-one") == 0
        assert not [m for m in state.messages if "read-by-the-stopped-one" in m.content]
        assert [m.content for m in state.messages].count("reply read-by-the-new-poller") == 1
        assert account.max_reads_in_flight == 1
        # On resume its call was past the lease: given up (or, had the answer come in, fenced).
        assert {"poll_abandoned", "poll_answer_fenced"} & set(leader.events)
    finally:
        for instance in instances:
            with contextlib.suppress(Exception):
                await instance.stop()


async def test_an_answer_in_hand_when_the_lease_is_taken_over_is_not_kept(
    tmp_path: Path, simulator: Simulator, pg_url: str
) -> None:
    """The poller has its answer in hand (a large one: 20,000 replies take it a moment to
    parse) when another instance takes the lease over. The transaction that would keep the
    answer checks the token first, and refuses: nothing of it is stored."""
    config = tmp_path / "smsbridge.yaml"
    config.write_text(config_text(pg_url, simulator.url))
    state = simulator.state
    account = state.account()
    poller = await start(config)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while await holder(pg_url) != poller.id:
            assert loop.time() < deadline
            await asyncio.sleep(0.1)
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as rival:
            for n in range(BULK):
                state.inject_reply(ALICE, f"bulk-{n}")
            while account.replies or account.reads_in_flight:  # the answer has been sent
                assert loop.time() < deadline
                await asyncio.sleep(0.002)
            await rival.execute(
                """UPDATE leases SET holder = 'rival', token = token + 1,
                          expires_at = extract(epoch from clock_timestamp()) + 3600
                   WHERE name = %s""",
                (f"poller:{DEFAULT_ACCOUNT}",),
            )
        while "poll_answer_fenced" not in poller.events:
            assert loop.time() < deadline, f"not fenced: {poller.events[-5:]}"
            await asyncio.sleep(0.1)
        assert await stored(pg_url, "bulk-") == 0
        calls = state.calls[Action.GET_REPLY.value]
        await asyncio.sleep(2.5)  # nothing to await: an instance without the lease stays quiet
        assert state.calls[Action.GET_REPLY.value] == calls
    finally:
        await poller.stop()
