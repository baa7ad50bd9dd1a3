"""Console page times with 100,000 messages in the store (target: messages page <= 100 ms).

Run: .venv/bin/python bench/console.py [--messages 100000] [--rounds 40] [--json]
Fills a store with `messages` jobs, each with its stored event (a mix of delivered, failed,
held and pending, to several numbers), starts the daemon in-process with its console, logs in,
and loads each page `rounds` times. Reports the server's own time per page (the console's
Server-Timing header: from the request reaching the console to its answer) and the time a
client on the same host waits, median and p95.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bridge.config.console import PasswordHash
from bridge.events import Event, EventKind, Status
from bridge.outbox.jobs import encode_event
from bridge.runtime import Daemon, load_settings
from bridge.store import migrations

NUMBERS = [f"151021100{n:02d}" for n in range(40)]
PASSWORD = "bench-password"  # noqa: S105 - a throwaway login for the bench
SECRET = "bench-console-secret-0123456789abcdef"  # noqa: S105 - likewise
PAGES = {
    "messages (first page)": "/messages",
    "messages (page at id 50,000)": "/messages?before=50000",
    "messages, state=failed": "/messages?state=failed",
    "messages, to one number, 1h": f"/messages?to={NUMBERS[3]}&since=1h",
    "messages, state=unknown (none)": "/messages?state=unknown",
    "message timeline": "/messages/99000",
    "queue": "/queue",
    "incidents": "/incidents",
    "gateway": "/gateway",
}


def fill(path: Path, count: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.upgrade(conn)
    now = time.time()
    rng = random.Random(7)
    events, jobs = [], []
    for n in range(1, count + 1):
        at = now - (count - n) * 2.0  # one message every two seconds, the newest now
        event = Event(
            EventKind.ALERT,
            "am",
            labels={"alertname": f"Alert{n % 50}", "severity": "warning", "instance": f"h{n}"},
            text=f"[FIRING] Alert{n % 50} h{n}: something is wrong",
            status=Status.FIRING,
            fingerprint=f"f{n}",
        )
        events.append((n, encode_event(event), at))
        roll = rng.random()
        state, delivery, code = ("sent", "delivered", "")
        if roll < 0.05:
            state, delivery = "failed", ""
        elif roll < 0.07:
            state, delivery, code = "pending", "", "hold"
        elif roll < 0.08:
            state, delivery = "pending", ""
        jobs.append(
            (
                n,
                "sms",
                rng.choice(NUMBERS),
                event.text,
                "warnings",
                n,
                state,
                1 if state != "pending" else 0,
                at + 3600 if state == "pending" else at,
                at,
                at + 1,
                str(158830675912720700 + n) if state == "sent" else "",
                1,
                "0.10" if state == "sent" else "0",
                "balance too low" if code else "",
                code,
                delivery,
                "DELIVRD" if delivery else "",
            )
        )
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events (id, body, received_at) VALUES (?, ?, ?)", events)
    conn.executemany(
        """INSERT INTO jobs (id, output, recipient, text, rule, event_id, state, attempts,
           next_at, created_at, updated_at, ref, segments, cost, reason, code, delivery,
           carrier_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        jobs,
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def config_text(store: Path) -> str:
    salt = b"bench-salt-01234"
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=16, r=8, p=1, dklen=32)
    hashed = PasswordHash(16, 8, 1, salt, digest).text()
    contacts = "\n".join(f'  c{n}: "{number}"' for n, number in enumerate(NUMBERS))
    return f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: "{store}"}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts:
{contacts}
console:
  listen: 127.0.0.1:0
  secret: {SECRET}
  users:
    bench: {{role: viewer, password_hash: "{hashed}"}}
"""


async def measure(base: str, rounds: int) -> dict[str, dict[str, float]]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base}/login") as page:
            text = await page.text()
        token = text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        form = {"csrf": token, "user": "bench", "password": PASSWORD}
        async with http.post(f"{base}/login", data=form) as answer:
            assert answer.status == 200, await answer.text()
        figures: dict[str, dict[str, float]] = {}
        for name, path in PAGES.items():
            server: list[float] = []
            client: list[float] = []
            for round_ in range(rounds + 3):
                started = time.perf_counter()
                async with http.get(base + path) as answer:
                    body = await answer.text()
                    assert answer.status == 200, body[:500]
                    if path.startswith("/messages") and "unknown" not in path and "/9" not in path:
                        assert body.count("data-id=") > 0, f"{name}: no rows"
                    timing = answer.headers["Server-Timing"]
                waited = (time.perf_counter() - started) * 1000
                if round_ >= 3:  # the first loads warm SQLite's page cache and the templates
                    server.append(float(timing.split("dur=", 1)[1]))
                    client.append(waited)
            figures[name] = {
                "server_median_ms": statistics.median(server),
                "server_p95_ms": statistics.quantiles(server, n=20)[-1],
                "client_median_ms": statistics.median(client),
            }
        return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store.sqlite3"
        started = time.perf_counter()
        fill(store, args.messages)
        filled = time.perf_counter() - started
        path = Path(folder) / "config.yaml"
        path.write_text(config_text(store), encoding="utf-8")
        daemon = Daemon(load_settings(path))
        await daemon.start()
        try:
            assert daemon.console is not None
            figures = await measure(daemon.console.url, args.rounds)
        finally:
            await daemon.stop()
    if args.json:
        print(json.dumps({"messages": args.messages, "pages": figures}, indent=2))
        return
    print(f"{args.messages:,} messages in the store (filled in {filled:.1f} s)")
    print(f"{'page':32} {'server median':>14} {'server p95':>11} {'client median':>14}")
    for name, figure in figures.items():
        print(
            f"{name:32} {figure['server_median_ms']:11.1f} ms {figure['server_p95_ms']:8.1f} ms"
            f" {figure['client_median_ms']:11.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
