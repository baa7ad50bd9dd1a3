"""Accept-path and full-path figures alone: server CPU per request with wrk, against bare aiohttp.

Run: .venv/bin/python bench/accept.py [--rounds 5] [--seconds 4] [--postgresql [--no-fsync]]
    [--json]
The same measurement as bench/ingest.py's section 1, without the other parts, so a change to
the request path or the pipeline can be measured in a minute or two. Needs `wrk` (see
bench/wrkload.py).

--postgresql: each daemon's store is a database of its own on one throwaway cluster started
from Debian's binaries as the tests start theirs (tests/pg_cluster.py), pinned to the servers'
CPUs. The cluster's own CPU per request (postmaster and backends, from /proc) is reported apart;
the ratio is the daemon's alone, with the database's added as a second figure. The tests'
cluster runs without fsync; here it is made durable (fsync, synchronous_commit, full page
writes) as the SQLite store is, unless --no-fsync.
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


async def main(
    plan: ingest.Plan, *, postgresql: bool = False, durable: bool = True
) -> dict[str, Any]:
    if not postgresql:
        return await measure(plan)
    sys.path.insert(0, ROOT)  # the tests' cluster helper
    from tests.pg_cluster import running_cluster

    with running_cluster() as cluster:
        pid = int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])
        if durable:
            make_durable(cluster.url("postgres"))
        if plan.server_cpus is not None:
            # The database is on the server's side: it must not take the client's core (its
            # backends, started later, inherit the postmaster's CPUs).
            ingest.pin_tree(pid, plan.server_cpus)
        with cluster.database() as accept, cluster.database() as full:
            plan = dataclasses.replace(plan, databases=(accept, full), database_pid=pid)
            result = await measure(plan)
    result["cpu"]["database"] = {"durable": durable, "server": "postmaster and its backends"}
    return result


def make_durable(admin_url: str) -> None:
    """Undo the tests' speed settings: every commit flushed to disk, as SQLite's is."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = on")
        conn.execute("SELECT pg_reload_conf()")


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
                return {"cpu": await ingest.cpu_ratios(work / "cpu", sim, bare, source, plan)}
        finally:
            await bare.stop()


def table(result: dict[str, Any]) -> str:
    cpu = result["cpu"]
    lines = [f"store: {cpu['store']}, {cpu['rounds']} rounds of {cpu['wrk']['seconds']} s"]
    for name in ("accept_only", "full_path"):
        part = cpu[name]
        ratio = part["cpu_ratio"]
        line = (
            f"{name}: CPU ratio to bare min {ratio['min']} / median {ratio['median']}"
            f" / max {ratio['max']} (spread {part.get('spread_pct', '-')} % of the median;"
            f" target ≥ {part['target']})"
        )
        if "cpu_ratio_with_database" in part:
            line += f"; with PostgreSQL's CPU median {part['cpu_ratio_with_database']['median']}"
        lines.append(line)
    for name in ("bare", "accept", "full"):
        part = cpu[name]
        line = (
            f"  {name}: µs per request {part['rounds_server_cpu_us_per_request']},"
            f" req/s median {part['req_per_s']['median']},"
            f" other load % {part['rounds_other_load_pct']}"
        )
        if "rounds_database_cpu_us_per_request" in part:
            line += f", PostgreSQL µs per request {part['rounds_database_cpu_us_per_request']}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4, help="each wrk run")
    parser.add_argument("--postgresql", action="store_true", help="store on PostgreSQL")
    parser.add_argument(
        "--no-fsync", action="store_true", help="PostgreSQL as the tests run it: without fsync"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    plan = dataclasses.replace(ingest.FULL, rounds=args.rounds, wrk_seconds=args.seconds)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
        plan = dataclasses.replace(
            plan, server_cpus=frozenset(cpus[1:]), client_cpus=frozenset(cpus[:1])
        )
    result = asyncio.run(main(plan, postgresql=args.postgresql, durable=not args.no_fsync))
    print(json.dumps(result, indent=2) if args.json else table(result))
