"""smsbridge daemons as real processes on one store, for the tests (and bench) that kill them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")


@dataclass
class Instance:
    """One `smsbridge run` process: where it serves and the id it goes by among instances."""

    config: Path
    proc: asyncio.subprocess.Process
    url: str
    id: str
    drained: asyncio.Task[None] | None = field(default=None, repr=False)
    events: list[str] = field(default_factory=list, repr=False)  # its log's event names

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def kill(self) -> None:
        """SIGKILL: no clean stop, no lease handed on, claims left behind."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)


async def start(config: Path) -> Instance:
    """Start a daemon and return once it serves."""
    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        "run",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    ident = ""
    while line := await asyncio.wait_for(proc.stdout.readline(), timeout=60):
        event = json.loads(line)
        if event.get("event") == "instance_joined":
            ident = str(event["instance"])
        if event.get("event") == "daemon_started":
            instance = Instance(config, proc, str(event["url"]), ident)
            instance.drained = asyncio.create_task(_drain(proc.stdout, instance.events))
            return instance
    raise AssertionError("the daemon exited before it started")


async def _drain(stream: asyncio.StreamReader, events: list[str]) -> None:
    while line := await stream.readline():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            events.append(str(json.loads(line)["event"]))
