"""Failover figures on PostgreSQL, three instances as real processes on one database.

Run: .venv/bin/python bench/failover.py [--rounds 5] [--json]   (needs Debian's postgresql)

- poll: SIGKILL the instance holding the account's poll lease, at a random moment of its poll
  cycle; the time until the next getReply reaches the gateway (necessarily from another
  instance), in seconds and in reply poll intervals (target: at most 2).
- jobs: SIGKILL an instance while it has gateway calls in flight (each send takes 1 s at the
  gateway); the time until every job it had claimed is recorded sent by another instance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import aiohttp
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers, run from anywhere

from bridge.logging import configure_logging
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    SimAccount,
    Simulator,
    SimulatorSettings,
)
from tests.e2e.instances import Instance, start
from tests.pg_cluster import running_cluster, unavailable

POLL_INTERVAL = 1.0
TOKEN = "failover-token-0123456789"  # noqa: S105 - a test bearer token
LEASE = f"poller:{DEFAULT_ACCOUNT}"


def config_text(url: str, gateway: str) -> str:
    return f"""
server: {{listen: "127.0.0.1:0"}}
store: {{url: "{url}"}}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: {POLL_INTERVAL}s, reports: 1h, balance: 1h}}
inputs:
  am:
    type: alertmanager
    auth: {{bearer: {TOKEN}}}
contacts:
  alice: "15102110086"
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], repeat_interval: 0s, template: "{{{{ labels.alertname }}}}"}}
"""


async def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(sql, params)
        return list(await cursor.fetchall())


async def poll_leader(url: str) -> str:
    rows = await query(
        url,
        """SELECT holder FROM leases WHERE name = %s
           AND expires_at > extract(epoch from clock_timestamp())""",
        LEASE,
    )
    return str(rows[0][0]) if rows else ""


async def poll_failover(
    url: str, sim: Simulator, instances: list[Instance], rng: random.Random
) -> float:
    loop = asyncio.get_running_loop()
    while not (leader_id := await poll_leader(url)):  # noqa: ASYNC110 - the database's state
        await asyncio.sleep(0.05)
    leader = next(i for i in instances if i.id == leader_id)
    await asyncio.sleep(rng.uniform(0, POLL_INTERVAL))  # anywhere in its poll cycle
    await leader.kill()
    killed_at = loop.time()
    calls = sim.state.calls[Action.GET_REPLY.value]
    while sim.state.calls[Action.GET_REPLY.value] == calls:  # noqa: ASYNC110 - fine-grained
        await asyncio.sleep(0.005)
    taken = loop.time() - killed_at
    instances[instances.index(leader)] = await start(leader.config)
    return taken


async def jobs_failover(url: str, sim: Simulator, instances: list[Instance], n: int) -> float:
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for k in range(10):
            body = {
                "version": "4",
                "groupKey": f"{n}-{k}",
                "status": "firing",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": f"J{n}-{k}"},
                        "fingerprint": f"{n}-{k}",
                    }
                ],
            }
            async with http.post(f"{instances[k % 3].url}/hooks/am", json=body) as response:
                assert response.status == 200
    while True:
        rows = await query(url, "SELECT id, claimed_by FROM jobs WHERE state = 'sending'")
        live = {i.id: i for i in instances}
        claimed = [(job, owner) for job, owner in rows if owner in live]
        if claimed:
            break
        await asyncio.sleep(0.01)
    victim = live[str(claimed[0][1])]
    ids = [job for job, owner in claimed if owner == victim.id]
    await victim.kill()
    killed_at = loop.time()
    while True:
        rows = await query(
            url, "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND state = 'sent'", ids
        )
        if rows[0][0] == len(ids):
            break
        await asyncio.sleep(0.05)
    taken = loop.time() - killed_at
    instances[instances.index(victim)] = await start(victim.config)
    await asyncio.sleep(1.0)
    return taken


async def main(rounds: int) -> dict[str, object]:
    rng = random.Random(20261202)
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=10**6),), report_delay=3600, rate_limit=None
    )
    with running_cluster() as cluster, cluster.database() as url:
        async with Simulator(settings) as sim:
            with tempfile.TemporaryDirectory() as folder:
                config = Path(folder) / "smsbridge.yaml"
                config.write_text(config_text(url, sim.url))
                instances = [await start(config) for _ in range(3)]
                try:
                    polls = [await poll_failover(url, sim, instances, rng) for _ in range(rounds)]
                    for action in (Action.SEND_ONCE, Action.SEND_BATCH):
                        sim.state.add_fault(
                            Fault(FaultKind.DELAY, action=action, seconds=1.0, count=10**6)
                        )
                    jobs = [await jobs_failover(url, sim, instances, n) for n in range(rounds)]
                finally:
                    for instance in instances:
                        await instance.stop()
    return {
        "poll_interval_s": POLL_INTERVAL,
        "poll_failover_s": {"median": statistics.median(polls), "max": max(polls), "all": polls},
        "poll_failover_intervals_max": max(polls) / POLL_INTERVAL,
        "jobs_failover_s": {"median": statistics.median(jobs), "max": max(jobs), "all": jobs},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(sys.stderr, level="warning")  # the simulator's per-call lines are noise here
    reason = unavailable()
    if reason:
        sys.exit(f"bench/failover.py: {reason}")
    figures = asyncio.run(main(args.rounds))
    print(json.dumps(figures, indent=2) if args.json else figures)
