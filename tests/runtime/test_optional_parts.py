"""Optional parts (paging, the console, the PostgreSQL driver) are loaded only when configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.testing import daemon_config

# Starts a daemon on the config, reads its gauges, stops it, and prints what it loaded.
PROBE = """
import asyncio, sys
from pathlib import Path
from bridge.runtime import Daemon, health, load_settings
from bridge.testing import quick_simulator_settings

async def main():
    daemon = Daemon(load_settings(Path(sys.argv[1])), simulator_settings=quick_simulator_settings())
    await daemon.start()
    try:
        await health.refresh_gauges(daemon)
    finally:
        await daemon.stop()

asyncio.run(main())
print(" ".join(sorted(sys.modules)))
"""
PLAIN = """
inputs:
  am: {type: alertmanager, allow_unauthenticated: true}
contacts:
  alice: "15102110086"
rules:
  - name: all
    match: {kind: alert}
    sms: {to: [alice]}
"""
PAGING = """
oncall:
  policies:
    ops:
      steps:
        - {notify: [alice]}
"""


def loaded(config: Path) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        (PLAIN, set()),
        (PLAIN + PAGING, {"bridge.paging"}),
    ],
    ids=["plain", "paging"],
)
def test_a_daemon_loads_only_the_optional_parts_its_config_asks_for(
    tmp_path: Path, text: str, wanted: set[str]
) -> None:
    modules = loaded(daemon_config(text, tmp_path))
    assert "bridge.runtime.daemon" in modules  # the probe ran the daemon
    optional = ("bridge.paging", "bridge.console", "psycopg", "psycopg_pool")
    assert {part for part in optional if part in modules} == wanted
