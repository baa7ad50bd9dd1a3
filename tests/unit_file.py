"""The shipped systemd unit, read by tests and benches that run the daemon as the unit does."""

from __future__ import annotations

import shlex
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "smsbridge.service"


def unit_environment() -> dict[str, str]:
    """The unit's `Environment=` assignments (not `EnvironmentFile=`: that is the operator's)."""
    found: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in shlex.split(line.removeprefix("Environment=")):
                name, _, value = assignment.partition("=")
                found[name] = value
    return found
