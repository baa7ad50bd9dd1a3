"""Debian's Alertmanager as a real process on a free loopback port, for the tests that drive it."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def free_port() -> int:
    # Alertmanager cannot report a port it picked itself, so take one the kernel just freed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_alertmanager(
    workdir: Path, config: str, cluster: Sequence[str] = ("--cluster.listen-address=",)
) -> Iterator[str]:
    """Start Alertmanager with `config` (YAML) in `workdir`; yields its base URL, then stops it.

    Alone by default; `cluster` gives the `--cluster.*` flags of a peer instead.
    """
    assert ALERTMANAGER is not None
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / "am.yml").write_text(config)
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={workdir / 'am.yml'}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *cluster,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def post_alerts(am: str, alerts: list[dict[str, Any]]) -> None:
    """Raise alerts through Alertmanager's own API, as a Prometheus would."""
    async with aiohttp.ClientSession() as http:
        for _ in range(200):  # Alertmanager needs a moment to open its port
            try:
                async with http.post(f"{am}/api/v2/alerts", json=alerts) as response:
                    assert response.status == 200, await response.text()
                    return
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)
    raise AssertionError("Alertmanager did not start")


async def post_disk_full(am: str, *, resolved: bool = False) -> None:
    """Raise (or resolve) a critical DiskFull on db1."""
    now = datetime.now(UTC).isoformat()
    alert: dict[str, Any] = {
        "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1"},
        "annotations": {"summary": "disk / is 97% full"},
        "startsAt": now,
    }
    if resolved:
        alert["endsAt"] = now
    await post_alerts(am, [alert])
