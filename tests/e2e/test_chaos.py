"""Chaos on PostgreSQL: three instances, 1,000 alerts posted round-robin with concurrency, three
seeded SIGKILLs (one of them the poll leader, in the middle of a read) and restarts.

Every accepted alert reaches the gateway; the only duplicates are from calls in flight at a
kill; the gateway never has two reads (getReply, getSendState) of the account in flight; every
reply injected meanwhile is forwarded, and more than once only as an alert may be: its SMS was
in a send call in flight at a kill (bench/chaos.py's longer run saw one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.plugins.c123.simulator import SimAccount, Simulator, SimulatorSettings
from tests.e2e import chaos

ALERTS = 1000
KILLS = 3
SEED = 20261202


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=10**6),), report_delay=0.5, rate_limit=None
    )
    async with Simulator(settings) as sim:
        yield sim


async def test_three_instances_survive_three_kills(
    tmp_path: Path, simulator: Simulator, pg_url: str
) -> None:
    seen = await chaos.run(
        tmp_path, simulator, pg_url, alerts=ALERTS, kills=KILLS, window=8.0, seed=SEED
    )
    assert len(seen.accepted) == ALERTS
    assert set(seen.sent) >= seen.accepted
    assert len(seen.sends_in_flight_at_kills) == KILLS
    repeated = [count for count in (*seen.sent.values(), *seen.forwarded.values()) if count > 1]
    assert len(repeated) <= sum(seen.sends_in_flight_at_kills) * chaos.BATCH, (
        f"{len(repeated)} repeated: more than the calls in flight at the kills"
    )
    assert all(count == 2 for count in repeated)  # one kill repeats a call once
    assert seen.max_reads_in_flight == 1, "two reads of the account were in flight"
    assert seen.reply_reads > 10
    assert set(seen.forwarded) == set(seen.replies)
