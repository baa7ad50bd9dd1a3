"""Accept-path figure alone: server CPU per request, daemon (processor held) against bare aiohttp.

Run: .venv/bin/python bench/accept.py [--rounds N] [--requests N] [--postgresql]
The same measurement as bench/ingest.py's "accept only" rows, without the other parts, so a
change to the request path can be measured in a minute or two.

--postgresql: the daemon's store is a PostgreSQL database on a throwaway cluster started from
Debian's binaries as the tests start theirs (tests/pg_cluster.py); the cluster's own CPU per
request (postmaster and backends) is reported apart, as `database_cpu_us_per_request`. Its
durability is the tests' (fsync off): the figure is CPU, not disk.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import ingest
import structlog

from bridge.plugins.c123.simulator import SimAccount, Simulator, SimulatorSettings

ROOT = str(Path(__file__).resolve().parent.parent)


async def main(plan: ingest.Plan, *, postgresql: bool = False) -> dict[str, Any]:
    if not postgresql:
        return await measure(plan)
    sys.path.insert(0, ROOT)  # the tests' cluster helper
    from tests.pg_cluster import running_cluster

    with running_cluster() as cluster:
        pid = int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])
        if plan.server_cpus is not None:
            # The database is on the server's side: it must not take the client's core (its
            # backends, started later, inherit the postmaster's CPUs).
            ingest.pin_tree(pid, plan.server_cpus)
        with cluster.database() as url:
            return await measure(dataclasses.replace(plan, database=url, database_pid=pid))


async def measure(plan: ingest.Plan) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    source = ingest.AlertSource(plan.teams)
    with tempfile.TemporaryDirectory(prefix="bench-accept-") as tmp:
        work = Path(tmp)
        settings = SimulatorSettings(
            accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=3600
        )
        bare = await ingest.start_bare(work, plan)
        try:
            async with Simulator(settings) as sim:
                return await ingest.accept_only(work / "accept-only", sim, bare, source, plan)
        finally:
            await bare.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--postgresql", action="store_true", help="store on PostgreSQL")
    args = parser.parse_args()
    plan = dataclasses.replace(ingest.FULL, rounds=args.rounds, requests=args.requests)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
        plan = dataclasses.replace(plan, server_cpus=frozenset(cpus[1:]))
    result = asyncio.run(main(plan, postgresql=args.postgresql))
    print(json.dumps(result, indent=2))
