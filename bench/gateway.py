"""Gateway figures: API calls per bulk send, and client overhead against bare aiohttp requests.

Run: .venv/bin/python bench/gateway.py [--calls 3000] [--json]
Both sides hit the same in-process simulator in the same run, interleaved in rounds, so the
machine's noise lands on both; the ratio is what to read, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import aiohttp
import structlog
from pydantic import SecretStr

from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    SimAccount,
    Simulator,
    SimulatorSettings,
)

NUMBERS = [f"139{n:08d}" for n in range(1000)]


async def count_calls(sim: Simulator, send: Callable[[], Awaitable[object]]) -> int:
    before = sum(sim.state.calls.values())
    await send()
    return sum(sim.state.calls.values()) - before


async def per_call_seconds(call: Callable[[], Awaitable[object]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - started) / n


async def overhead(
    sim: Simulator, client: C123Client, http: aiohttp.ClientSession, calls: int, rounds: int
) -> dict[str, dict[str, float]]:
    form = {"action": "getBalance", "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
    balance_url = sim.url + Action.GET_BALANCE.path

    async def bare_balance() -> None:
        async with http.post(balance_url, data=form) as response:
            await response.read()

    send_url = sim.url + Action.SEND_ONCE.path
    send_form = {**form, "action": "sendOnce", "m": NUMBERS[0], "c": "bench"}

    async def bare_send() -> None:
        async with http.post(send_url, data=send_form) as response:
            await response.read()

    batch = [(number, f"code {number}") for number in NUMBERS[:100]]
    batch_form = {
        **form,
        "action": "sendBatch",
        "m": ",".join(n for n, _ in batch),
        "c": "{|}".join(t for _, t in batch),
    }
    batch_url = sim.url + Action.SEND_BATCH.path

    async def bare_batch() -> None:
        async with http.post(batch_url, data=batch_form) as response:
            await response.read()

    pairs = {
        "getBalance": (bare_balance, client.get_balance),
        "sendOnce (1 number)": (bare_send, lambda: client.send_once([NUMBERS[0]], "bench")),
        "sendBatch (100 numbers)": (bare_batch, lambda: client.send_batch(batch)),
    }
    figures = {}
    # sendBatch calls are ~20x slower, so fewer of them keep the run short.
    for name, (bare, typed) in pairs.items():
        per_round = max(1, calls // rounds // (20 if "Batch" in name else 1))
        await per_call_seconds(bare, 20)  # warm the connection pool and caches
        await per_call_seconds(typed, 20)
        bare_times, typed_times = [], []
        for _ in range(rounds):
            bare_times.append(await per_call_seconds(bare, per_round))
            typed_times.append(await per_call_seconds(typed, per_round))
        bare_median = statistics.median(bare_times)
        typed_median = statistics.median(typed_times)
        figures[name] = {
            "bare_us": round(bare_median * 1e6, 1),
            "client_us": round(typed_median * 1e6, 1),
            "ratio": round(typed_median / bare_median, 3),
        }
    return figures


async def main(calls: int, rounds: int) -> dict[str, object]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=3600
    )
    async with Simulator(settings) as sim, aiohttp.ClientSession() as http:
        config = C123Config(
            rate_limit=None,  # measure the client, not its pacing
            base_url=sim.url,
            account=DEFAULT_ACCOUNT,
            authkey=SecretStr(DEFAULT_AUTHKEY),
        )
        client = C123Client(config, http)
        # A new key is proven by one getBalance before any other call: done once, not counted.
        await client.get_balance()
        one_text = await count_calls(
            sim, lambda: client.send_many([(n, "同一条") for n in NUMBERS])
        )
        own_texts = await count_calls(
            sim, lambda: client.send_many([(n, f"code {n}") for n in NUMBERS])
        )
        return {
            "api_calls_1000_numbers_one_text": {"measured": one_text, "target": 1},
            "api_calls_1000_numbers_own_texts": {"measured": own_texts, "target": 10},
            "client_overhead_vs_bare_aiohttp": await overhead(sim, client, http, calls, rounds),
            "overhead_target_ratio": 1.2,
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per side and action")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args.calls, args.rounds))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
