"""Paging figures: how soon a reply stops escalation, and how many pages an alert storm makes.

Run: .venv/bin/python bench/paging.py [--rounds 10] [--reply-poll 2] [--storm 1000] [--json]

The daemon runs in this process with its embedded c123 simulator, alerts come in through its
Alertmanager webhook.

1. Reply to stop: an incident pages alice; her `1a` is put in the gateway's reply queue at a
   random moment of the reply poll's cycle (`--reply-poll` seconds, the `polling.replies` of the
   run); the figure is the time until the incident is acknowledged with no step timer left
   (escalation stopped), read from the store. Target: ≤ one reply poll interval + 1 s.
2. Storm: `--storm` alerts of one alert group in webhooks of 100, on a policy of 2 steps (3
   numbers) and repeat 1, nobody answering, until every step and repeat went unanswered. The
   figure is pages per incident; the bound is (numbers the steps reach) × (repeat + 1) = 6.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bridge.logging import configure_logging
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.store import Connection
from bridge.testing import daemon_config, post_json

A, B, C = "15102110086", "15102110087", "15102110088"
BATCH = 100  # alerts a webhook
STORM_BOUND = 3 * 2  # numbers the steps reach x (repeat + 1)


def config(reply_poll: float) -> str:
    return f"""
polling: {{replies: {int(reply_poll * 1000)}ms, reports: 200ms, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts:
  alice: {{number: "{A}", name: Alice}}
  bob: {{number: "{B}", name: Bob}}
  carol: {{number: "{C}", name: Carol}}
oncall:
  policies:
    single:
      steps: [{{notify: [alice]}}, {{notify: [bob], after: 1h}}]
      report_timeout: 1h
    storm:
      steps: [{{notify: [alice, bob], after: 1s}}, {{notify: [carol], after: 1s}}]
      repeat: 1
      report_timeout: 1h
rules:
  - name: single
    match: {{kind: alert, labels: {{policy: single}}}}
    page: {{policy: single, group_by: [alertname]}}
  - name: storm
    match: {{kind: alert, labels: {{policy: storm}}}}
    page: {{policy: storm, group_by: [alertname]}}
"""


def webhook(alerts: list[dict[str, Any]], group: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group,
        "status": "firing",
        "receiver": "sms",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


def alert(name: str, policy: str, n: int) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, "policy": policy, "severity": "critical", "n": str(n)},
        "annotations": {},
        "startsAt": "2026-12-01T00:00:00Z",
        "endsAt": "",
        "fingerprint": f"{name}-{n:06d}",
    }


async def until(check: Any, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)


async def reply_to_stop(daemon: Daemon, rounds: int, reply_poll: float) -> list[float]:
    """Seconds from `1a` entering the reply queue to escalation stopping, per round."""
    assert daemon.simulator is not None
    state = daemon.simulator.state
    waits = []
    for round_ in range(rounds):
        name = f"Single{round_}"
        body = webhook([alert(name, "single", 0)], name)
        assert (await post_json(daemon, "/hooks/am", body))[0] == 200

        def page(found: Any, title: str = name) -> Any:
            return next((m for m in found.messages if f"] {title} - reply " in m.content), None)

        await state.wait_for(lambda s: page(s) is not None, timeout=10)
        code = page(state).content.split(" - reply ", 1)[1].split("a ", 1)[0]
        await asyncio.sleep(random.uniform(0, reply_poll))  # anywhere in the poll's cycle
        put = time.monotonic()
        state.inject_reply(A, f"{code}a")

        def stopped(conn: Connection, title: str = name) -> bool:
            row = conn.execute(
                """SELECT i.state, (SELECT COUNT(*) FROM timers t WHERE t.kind = 'incident.step'
                   AND t.key = CAST(i.id AS TEXT)) AS steps FROM incidents i WHERE i.title = ?""",
                (title,),
            ).fetchone()
            return row is not None and row["state"] == "acknowledged" and row["steps"] == 0

        await until(lambda: daemon.store.read(stopped))
        waits.append(time.monotonic() - put)
    return waits


async def storm(daemon: Daemon, alerts: int) -> dict[str, Any]:
    """Pages per incident when `alerts` alerts of one group arrive at once and nobody answers."""
    started = time.monotonic()
    for first in range(0, alerts, BATCH):
        batch = [alert("Storm", "storm", n) for n in range(first, min(first + BATCH, alerts))]
        assert (await post_json(daemon, "/hooks/am", webhook(batch, "storm")))[0] == 200

    def over(conn: Connection) -> bool:
        row = conn.execute("SELECT position, timeline FROM incidents WHERE title = 'Storm'")
        found = row.fetchone()
        return found is not None and found["position"] > len(json.loads(found["timeline"]))

    await until(lambda: daemon.store.read(over), timeout=120)

    def counts(conn: Connection) -> tuple[int, int, int]:
        incidents = conn.execute("SELECT COUNT(*) AS n FROM incidents WHERE title = 'Storm'")
        pages = conn.execute(
            """SELECT COUNT(*) AS n FROM incident_pages p JOIN incidents i ON i.id = p.incident_id
               WHERE i.title = 'Storm'"""
        )
        alerts_seen = conn.execute("SELECT alerts FROM incidents WHERE title = 'Storm'")
        return (
            int(incidents.fetchone()["n"]),
            int(pages.fetchone()["n"]),
            int(alerts_seen.fetchone()["alerts"]),
        )

    incidents, pages, counted = await daemon.store.read(counts)
    return {
        "alerts": alerts,
        "incidents": incidents,
        "alerts_on_the_incident": counted,
        "pages": pages,
        "pages_per_incident": pages / max(incidents, 1),
        "bound": STORM_BOUND,
        "seconds": round(time.monotonic() - started, 1),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--reply-poll", type=float, default=2.0, help="polling.replies, seconds")
    parser.add_argument("--storm", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(sys.stderr, level="error")
    with tempfile.TemporaryDirectory() as folder:
        path = daemon_config(config(args.reply_poll), Path(folder))
        settings = load_settings(path)
        daemon = Daemon(
            settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None)
        )
        await daemon.start()
        try:
            waits = await reply_to_stop(daemon, args.rounds, args.reply_poll)
            stormed = await storm(daemon, args.storm)
        finally:
            await daemon.stop()
    target = args.reply_poll + 1.0
    result = {
        "reply_to_stop_seconds": {
            "min": round(min(waits), 3),
            "median": round(statistics.median(waits), 3),
            "max": round(max(waits), 3),
            "target": target,
            "reply_poll": args.reply_poll,
            "rounds": args.rounds,
        },
        "storm": stormed,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    figure = result["reply_to_stop_seconds"]
    print(
        f"reply -> escalation stopped ({args.rounds} rounds, replies polled every "
        f"{args.reply_poll:g} s): min {figure['min']} s, median {figure['median']} s, "
        f"max {figure['max']} s (target <= {target:g} s)"
    )
    print(
        f"storm of {stormed['alerts']} alerts on one policy: {stormed['incidents']} incident(s), "
        f"{stormed['pages']} pages ({stormed['pages_per_incident']:g} per incident; bound "
        f"{stormed['bound']}), walked in {stormed['seconds']} s"
    )
    ok = figure["max"] <= target and stormed["pages_per_incident"] <= STORM_BOUND
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
