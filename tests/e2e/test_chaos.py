"""Chaos on PostgreSQL: three instances, 1,000 alerts posted round-robin with concurrency, three
seeded SIGKILLs (one of them the poll leader, in the middle of a read) and restarts.

Every accepted alert reaches the gateway; the only duplicates are from calls in flight at a
kill; the gateway never has two reads (getReply, getSendState) of the account in flight; every
reply injected meanwhile is forwarded exactly once."""

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
    duplicated = [name for name, count in seen.sent.items() if count > 1]
    assert len(duplicated) <= sum(seen.sends_in_flight_at_kills) * chaos.BATCH, (
        f"{len(duplicated)} repeated: more than the calls in flight at the kills"
    )
    assert all(seen.sent[name] == 2 for name in duplicated)
    assert seen.max_reads_in_flight == 1, "two reads of the account were in flight"
    assert seen.reply_reads > 10
    twice = {reply: count for reply, count in seen.forwarded.items() if count != 1}
    assert not twice, f"replies forwarded more than once: {twice}"
    assert set(seen.forwarded) == set(seen.replies)
