"""The 5,000-alert chaos run on PostgreSQL: three instances as processes, alerts posted
round-robin with concurrency (about 100 a second), a seeded SIGKILL every few seconds (one of
them the poll leader, in the middle of a read) and a restart after each.

Run: .venv/bin/python bench/chaos.py [--alerts 5000] [--kills 10] [--window 40] [--json]
Prints what the test asserts, as figures: alerts accepted and sent, duplicates (and the calls
in flight at the kills, the only allowed source), the most reads in flight, replies forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers, run from anywhere

from bridge.logging import configure_logging
from bridge.plugins.c123.simulator import SimAccount, Simulator, SimulatorSettings
from tests.e2e import chaos
from tests.pg_cluster import running_cluster, unavailable


async def main(alerts: int, kills: int, window: float, seed: int) -> dict[str, object]:
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=10**7),), report_delay=0.5, rate_limit=None
    )
    with running_cluster() as cluster, cluster.database() as url:
        async with Simulator(settings) as sim:
            with tempfile.TemporaryDirectory() as folder:
                began = time.monotonic()
                seen = await chaos.run(
                    Path(folder), sim, url, alerts=alerts, kills=kills, window=window, seed=seed
                )
                took = time.monotonic() - began
    duplicated = [name for name, count in seen.sent.items() if count > 1]
    return {
        "alerts_accepted": len(seen.accepted),
        "alerts_sent": len(set(seen.sent) & seen.accepted),
        "alerts_lost": len(seen.accepted - set(seen.sent)),
        "kills": len(seen.sends_in_flight_at_kills),
        "send_calls_in_flight_at_kills": seen.sends_in_flight_at_kills,
        "duplicated_alerts": len(duplicated),
        "duplicates_allowed_at_most": sum(seen.sends_in_flight_at_kills) * chaos.BATCH,
        "max_reads_in_flight": seen.max_reads_in_flight,
        "replies_injected": len(seen.replies),
        "replies_forwarded_once": sum(1 for c in seen.forwarded.values() if c == 1),
        "replies_forwarded_twice_or_more": sum(1 for c in seen.forwarded.values() if c > 1),
        "seconds": round(took, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--window", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(sys.stderr, level="warning")  # the simulator's per-call lines are noise here
    reason = unavailable()
    if reason:
        sys.exit(f"bench/chaos.py: {reason}")
    figures = asyncio.run(main(args.alerts, args.kills, args.window, args.seed))
    print(json.dumps(figures, indent=2) if args.json else figures)
