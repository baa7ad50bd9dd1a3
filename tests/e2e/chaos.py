"""A chaos run on PostgreSQL, for the test (1,000 alerts, three kills) and the bench (5,000):
instances as real processes, alerts posted round-robin with concurrency, seeded SIGKILLs (one
of them the poll leader, in the middle of a read) and restarts, replies injected throughout."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg

from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
)
from tests.e2e.instances import Instance, start

INSTANCES = 3
CONCURRENCY = 8
PACE = CONCURRENCY / 100
TOKEN = "chaos-token-0123456789"
TEAMS = 10
OPS = "13900000999"
BATCH = 100  # numbers per gateway call at most (sendBatch)


def config_text(url: str, gateway: str) -> str:
    contacts = "\n".join(f'  team{n}: "139{n:08d}"' for n in range(TEAMS))
    rules = "\n".join(
        f"""  - name: team{n}
    match: {{kind: alert, labels: {{team: t{n}}}}}
    sms: {{to: [team{n}], repeat_interval: 0s, template: "{{{{ labels.alertname }}}}"}}"""
        for n in range(TEAMS)
    )
    return f"""
server: {{listen: "127.0.0.1:0"}}
store: {{url: "{url}"}}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 500ms, reports: 1s, balance: 1h}}
inputs:
  am:
    type: alertmanager
    auth: {{bearer: {TOKEN}}}
contacts:
  ops: "{OPS}"
{contacts}
rules:
{rules}
  - name: replies
    match: {{kind: reply}}
    sms: {{to: [ops], repeat_interval: 0s, template: "reply {{{{ text }}}}"}}
"""


def payload(n: int) -> dict[str, object]:
    return {
        "version": "4",
        "groupKey": f'{{}}:{{n="{n}"}}',
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": f"Chaos{n:05d}", "team": f"t{n % TEAMS}"},
                "startsAt": "2026-12-01T00:00:00Z",
                "fingerprint": f"{n:016x}",
            }
        ],
    }


class Chaos:
    """The instances, their restarts, and what the test saw at each kill."""

    def __init__(self, config: Path, url: str, account: str) -> None:
        self.config = config
        self.url = url
        self.account = account
        self.instances: list[Instance] = []
        self.sends_in_flight_at_kills: list[int] = []
        self.turn = 0

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.proc.returncode is None]

    def next_url(self) -> str:
        live = self.live()
        self.turn += 1
        return live[self.turn % len(live)].url

    async def poll_leader(self) -> str:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cursor = await conn.execute(
                """SELECT holder FROM leases WHERE name = %s
                   AND expires_at > extract(epoch from clock_timestamp())""",
                (f"poller:{self.account}",),
            )
            row = await cursor.fetchone()
        return "" if row is None else str(row[0])

    async def kill_and_restart(self, victim: Instance, in_flight: int) -> None:
        self.sends_in_flight_at_kills.append(in_flight)
        await victim.kill()
        await asyncio.sleep(1.0)
        self.instances[self.instances.index(victim)] = await start(self.config)


@dataclass
class Outcome:
    """What a run saw: what was accepted and sent, and what was in flight at each kill."""

    accepted: set[str]
    replies: list[str]
    sent: Counter[str]  # alert SMS by text
    forwarded: Counter[str]  # replies forwarded, by the reply's text
    sends_in_flight_at_kills: list[int]
    max_reads_in_flight: int
    reply_reads: int


async def run(
    folder: Path,
    simulator: Simulator,
    url: str,
    *,
    alerts: int,
    kills: int,
    window: float,
    seed: int,
) -> Outcome:
    """Post `alerts` while `kills` instances are killed (within `window` seconds) and
    restarted; returns once every accepted alert and injected reply reached the gateway."""
    rng = random.Random(seed)
    config = folder / "smsbridge.yaml"
    config.write_text(config_text(url, simulator.url))
    state = simulator.state
    account = state.account()
    # Each call takes a moment, so kills land while calls (and reads) are in flight.
    state.add_fault(Fault(FaultKind.DELAY, seconds=0.1, count=10**6))
    chaos = Chaos(config, url, DEFAULT_ACCOUNT)
    chaos.instances = list(await asyncio.gather(*(start(config) for _ in range(INSTANCES))))
    accepted: set[str] = set()
    replies: list[str] = []
    posting_done = asyncio.Event()
    quiet = asyncio.Event()  # set while replies may be injected
    quiet.set()

    async def post_all() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(alerts):
            queue.put_nowait(n)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def worker() -> None:
                while not queue.empty():
                    n = queue.get_nowait()
                    await asyncio.sleep(PACE)  # spread over the kills: ~100 alerts a second
                    while True:  # a killed instance's post is sent to the next one
                        try:
                            async with http.post(
                                f"{chaos.next_url()}/hooks/am", json=payload(n)
                            ) as response:
                                if response.status == 200:
                                    accepted.add(f"Chaos{n:05d}")
                                    break
                        except (aiohttp.ClientError, ConnectionError):
                            pass
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        posting_done.set()

    async def inject_replies() -> None:
        n = 0
        while not posting_done.is_set():
            await quiet.wait()
            content = f"r{n:04d}"
            state.inject_reply(f"139{n % TEAMS:08d}", content)
            replies.append(content)
            n += 1
            await asyncio.sleep(0.1)

    def forwarded() -> Counter[str]:
        return Counter(
            m.content.removeprefix("reply ")
            for m in state.messages
            if m.mobile == OPS and m.content.startswith("reply ")
        )

    async def kill_all() -> None:
        times = sorted(rng.uniform(1.5, window) for _ in range(kills))
        leader_kill = rng.randrange(kills)
        loop = asyncio.get_running_loop()
        began = loop.time()
        for index, at in enumerate(times):
            await asyncio.sleep(max(at - (loop.time() - began), 0))
            if index == leader_kill:
                # A read's records are gone once the gateway hands them out: pause injecting
                # until every reply so far is forwarded, then kill the poller mid-read.
                quiet.clear()
                await state.wait_for(lambda s: set(forwarded()) >= set(replies), timeout=30)
                holder = await chaos.poll_leader()
                victim = next(i for i in chaos.live() if i.id == holder)
                await state.wait_for(lambda s: account.reads_in_flight > 0, timeout=10)
            else:
                leader = await chaos.poll_leader()
                victim = rng.choice([i for i in chaos.live() if i.id != leader])
            await chaos.kill_and_restart(victim, account.in_flight - account.reads_in_flight)
            quiet.set()

    try:
        await asyncio.wait_for(
            asyncio.gather(post_all(), inject_replies(), kill_all()), window + 60
        )
        assert len(accepted) == alerts
        await state.wait_for(lambda s: {m.content for m in s.messages} >= accepted, timeout=60)
        await state.wait_for(lambda s: set(forwarded()) >= set(replies), timeout=30)
        await asyncio.sleep(1.0)  # nothing to await: a late duplicate would come by now
    finally:
        for instance in chaos.instances:
            with contextlib.suppress(Exception):
                await instance.stop()
    return Outcome(
        accepted,
        replies,
        Counter(m.content for m in state.messages if m.mobile != OPS),
        forwarded(),
        chaos.sends_in_flight_at_kills,
        account.max_reads_in_flight,
        state.calls[Action.GET_REPLY.value],
    )
