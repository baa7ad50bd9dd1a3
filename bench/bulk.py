"""Bulk send figures: `smsbridge send --csv` of N rows, own texts and a template, end to end.

Run: .venv/bin/python bench/bulk.py [--rows 10000] [--json]
The installed command runs as a subprocess against an in-process simulator with no rate limit
(the gateway's own pace is `gateway.rate_limit`, 10 calls a second by default): what is measured
is checking, queueing, claiming and recording, and the calls each run makes. A second run of the
same file shows what resuming a finished run costs.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import structlog

from bridge.plugins.c123.simulator import DEFAULT_ACCOUNT, DEFAULT_AUTHKEY, Simulator
from bridge.testing import quick_simulator_settings

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
TEMPLATE = "尊敬的{p1}，您的包裹{p2}今天发出"


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    texts, params = folder / "texts.csv", folder / "params.csv"
    with texts.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["number", "text"])
        writer.writerows(
            [f"151{i:08d}", f"您好 {i}, your parcel {i * 7} ships today"] for i in range(rows)
        )
    with params.open("w", newline="", encoding="gbk") as out:
        writer = csv.writer(out)
        writer.writerow(["number", "p1", "p2"])
        writer.writerows([f"152{i:08d}", f"王{i}", str(i * 7)] for i in range(rows))
    return texts, params


def _cpu() -> float:
    """CPU seconds the finished subprocesses used."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run(sim: Simulator, *args: str) -> dict[str, object]:
    calls = sum(sim.state.calls.values())
    cpu = _cpu()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        SMSBRIDGE, "send", *args, "--yes", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await process.communicate()
    seconds = time.perf_counter() - started
    result = json.loads(out)["result"]
    return {
        "sent": result["sent"],
        "calls": sum(sim.state.calls.values()) - calls,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(_cpu() - cpu, 2),
        "rows_per_second": round(result["total"] / seconds),
    }


async def main(rows: int) -> dict[str, object]:
    async with Simulator(quick_simulator_settings()) as sim:
        sim.state.set_balance(remain=Decimal(rows))
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            config = folder / "c.yaml"
            config.write_text(
                f"store: {{path: {folder / 's.sqlite3'}}}\n"
                f"gateway: {{base_url: {sim.url}, account: {DEFAULT_ACCOUNT}, "
                f"authkey: {DEFAULT_AUTHKEY}, rate_limit: null}}\n"
                f"bulk: {{confirm_above: {rows}}}\n"
            )
            texts, params = write_files(folder, rows)
            common = ("-c", str(config), "--csv")
            figures = {
                "rows": rows,
                "texts (sendBatch)": await run(sim, *common, str(texts)),
                "template (sendParam, GBK)": await run(
                    sim, *common, str(params), "--template", TEMPLATE
                ),
                "texts again (resumed, all sent)": await run(sim, *common, str(texts)),
            }
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures["peak_rss_mb"] = round(peak / 1024)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    figures = asyncio.run(main(options.rows))
    if options.json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
