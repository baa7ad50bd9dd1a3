"""`smsbridge run` as a process: SIGTERM stops it cleanly, SIGHUP reloads, a bad config exits 78."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    SimAccount,
    Simulator,
    SimulatorSettings,
)

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
TOKEN = "signals-test-token"
A, B = "15102110086", "15102110087"
SHUTDOWN_TIMEOUT = 1.0
EXIT_CONFIG = 78
_deliveries = itertools.count()


def config_text(tmp_path: Path, gateway: str, *, template: str = "v1", rules: str = "") -> str:
    """A daemon config: an alertmanager input, and a rule paging A as `<template> <alertname>`."""
    return f"""
server: {{listen: "127.0.0.1:0", shutdown_timeout: {SHUTDOWN_TIMEOUT}s}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 20ms}}
inputs:
  am:
    type: alertmanager
    auth: {{bearer: {TOKEN}}}
contacts:
  alice: "{A}"
  bob: "{B}"
rules:
{rules}  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], template: "{template} {{{{ labels.alertname }}}}"}}
"""


# Two problems at once: a duration that is not one, and a key no rule has.
BROKEN_RULES = """  - name: broken
    match: {kind: alert}
    sms: {to: [alice], repeat_interval: soon}
    colour: red
"""


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line containing `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


class DaemonProcess:
    """`smsbridge run` in a subprocess, with its JSON log lines collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.logs: list[dict[str, Any]] = []
        self.stderr = bytearray()
        self.url = ""
        self._changed = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(cls, config: Path) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        proc = await asyncio.create_subprocess_exec(
            SMSBRIDGE,
            "run",
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        daemon = cls(proc)
        started = await daemon.wait_log("daemon_started", timeout=30)
        daemon.url = started["url"]
        return daemon

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"event": "<not json>", "line": line.decode(errors="replace")}
            self.logs.append(entry)
            self._changed.set()
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self.stderr.extend(chunk)

    def find(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry.get("event") == event]

    async def wait_log(self, event: str, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
        """The first log line with this event name, once it is written."""
        async with asyncio.timeout(timeout):
            while not (found := self.find(event)):
                if self._readers[0].done():
                    raise AssertionError(
                        f"exited without logging {event}: {self.stderr.decode(errors='replace')}"
                    )
                self._changed.clear()
                await self._changed.wait()
        return found[0]

    async def terminate(self, timeout: float = 10) -> tuple[int, float]:  # noqa: ASYNC109
        """Send SIGTERM; return the exit code and the seconds it took to exit."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        elapsed = time.monotonic() - began
        await asyncio.wait_for(asyncio.gather(*self._readers), timeout)
        return code, elapsed

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for reader in self._readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=10**6),), report_delay=3600, rate_limit=None
    )
    async with Simulator(settings) as sim:
        yield sim


@pytest.fixture
async def started() -> AsyncIterator[list[DaemonProcess]]:
    """Daemons a test starts; any still running at its end are killed."""
    processes: list[DaemonProcess] = []
    yield processes
    for process in processes:
        await process.kill()


async def launch(config: Path, started: list[DaemonProcess]) -> DaemonProcess:
    daemon = await DaemonProcess.start(config)
    started.append(daemon)
    return daemon


async def post_alerts(url: str, names: list[str], labels: dict[str, str] | None = None) -> None:
    """Post one Alertmanager notification firing these alerts; it must be accepted."""
    delivery = next(_deliveries)
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, **(labels or {})},
            "annotations": {},
            "startsAt": "2026-11-25T00:00:00Z",
            "fingerprint": f"{delivery:08x}{n:08x}",
        }
        for n, name in enumerate(names)
    ]
    payload = {
        "version": "4",
        "groupKey": f'{{}}:{{delivery="{delivery}"}}',
        "status": "firing",
        "receiver": "smsbridge",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(headers=headers, timeout=timeout) as http,
        http.post(f"{url}/hooks/am", json=payload) as response,
    ):
        assert response.status == 200, await response.text()


async def cli(*args: str) -> tuple[int, str, str]:
    """Run smsbridge to completion: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def sent(simulator: Simulator) -> set[tuple[str, str]]:
    return {(m.mobile, m.content) for m in simulator.state.messages}


# --- SIGTERM -----------------------------------------------------------------------------------


async def test_sigterm_while_idle_exits_0(
    tmp_path: Path, simulator: Simulator, started: list[DaemonProcess]
) -> None:
    """SIGTERM to an idle daemon: exit code 0, and `daemon_stopped` is its last word."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path, simulator.url))
    daemon = await launch(config, started)
    code, elapsed = await daemon.terminate()
    assert code == 0
    assert elapsed < SHUTDOWN_TIMEOUT + 2
    assert daemon.logs[-1]["event"] == "daemon_stopped"


async def test_sigterm_during_slow_sends_exits_0_and_loses_nothing(
    tmp_path: Path, simulator: Simulator, started: list[DaemonProcess]
) -> None:
    """SIGTERM while a slow send is under way: exit 0 within the timeout; a restart sends all."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path, simulator.url))
    for action in (Action.SEND_ONCE, Action.SEND_BATCH):
        simulator.state.add_fault(Fault(FaultKind.DELAY, count=10**6, action=action, seconds=3))
    daemon = await launch(config, started)
    names = [f"Slow{n}" for n in range(5)]
    await post_alerts(daemon.url, names)
    await simulator.state.wait_for(lambda s: s.calls["sendOnce"] + s.calls["sendBatch"] >= 1)
    code, elapsed = await daemon.terminate()
    assert code == 0
    # The send under way gets the shutdown timeout to finish (it would take 3 s), then exit.
    assert SHUTDOWN_TIMEOUT * 0.9 < elapsed < SHUTDOWN_TIMEOUT + 2
    assert daemon.find("daemon_stopped")
    assert len(simulator.state.messages) < len(names), "the stop came too late to test anything"

    simulator.state.clear_faults()
    daemon = await launch(config, started)
    assert daemon.find("jobs_recovered"), "the interrupted send is taken up again"
    expected = {(A, f"v1 {name}") for name in names}
    await simulator.state.wait_for(lambda s: sent(simulator) >= expected, timeout=10)
    code, _ = await daemon.terminate()
    assert code == 0


# --- SIGHUP ------------------------------------------------------------------------------------


async def test_sighup_reloads_a_changed_config(
    tmp_path: Path, simulator: Simulator, started: list[DaemonProcess]
) -> None:
    """SIGHUP with a changed config logs `reload_done`; the next webhook uses the new rules."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path, simulator.url))
    daemon = await launch(config, started)
    await post_alerts(daemon.url, ["Before"])
    await simulator.state.wait_for(lambda s: (A, "v1 Before") in sent(simulator))

    new_rule = """  - name: db-team
    match: {kind: alert, labels: {team: db}}
    sms: {to: [bob], template: "db {{ labels.alertname }}"}
    continue: true
"""
    config.write_text(config_text(tmp_path, simulator.url, template="v2", rules=new_rule))
    daemon.proc.send_signal(signal.SIGHUP)
    done = await daemon.wait_log("reload_done")
    assert done["rules"] == 2
    await post_alerts(daemon.url, ["After"], labels={"team": "db"})
    expected = {(A, "v2 After"), (B, "db After")}
    await simulator.state.wait_for(lambda s: sent(simulator) >= expected)
    assert (A, "v1 After") not in sent(simulator)
    code, _ = await daemon.terminate()
    assert code == 0


async def test_sighup_with_an_invalid_config_keeps_the_old_one(
    tmp_path: Path, simulator: Simulator, started: list[DaemonProcess]
) -> None:
    """A bad reload lists every problem with file:line; the old config keeps paging; metric 0."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path, simulator.url))
    daemon = await launch(config, started)

    broken = config_text(tmp_path, simulator.url, template="v2", rules=BROKEN_RULES)
    config.write_text(broken)
    daemon.proc.send_signal(signal.SIGHUP)
    failed = await daemon.wait_log("reload_failed")
    problems = failed["problems"]
    assert len(problems) == 2, problems
    duration, unknown = sorted(problems, key=lambda p: "colour" in p)
    assert duration.startswith(f"{config}:{line_of(broken, 'repeat_interval: soon')}:")
    assert "rules[0].sms.repeat_interval" in duration
    assert unknown.startswith(f"{config}:{line_of(broken, 'colour: red')}:")
    assert "colour" in unknown
    assert not daemon.find("reload_done")

    await post_alerts(daemon.url, ["StillPaging"])
    await simulator.state.wait_for(lambda s: (A, "v1 StillPaging") in sent(simulator))
    async with aiohttp.ClientSession() as http, http.get(f"{daemon.url}/metrics") as response:
        metrics = await response.text()
    assert re.search(r"^smsbridge_config_last_reload_successful 0(\.0)?$", metrics, re.M)
    code, _ = await daemon.terminate()
    assert code == 0


# --- bad configs at start, and `check` ---------------------------------------------------------


async def test_run_with_a_bad_config_exits_78_with_the_report(
    tmp_path: Path, simulator: Simulator
) -> None:
    """`smsbridge run` on a bad config starts nothing, prints every problem, and exits 78."""
    config = tmp_path / "config.yaml"
    broken = config_text(tmp_path, simulator.url, rules=BROKEN_RULES)
    config.write_text(broken)
    code, out, err = await cli("run", "-c", str(config))
    assert code == EXIT_CONFIG
    assert f"error: {config} has 2 problems" in err
    assert f"{config}:{line_of(broken, 'repeat_interval: soon')}:" in err
    assert f"{config}:{line_of(broken, 'colour: red')}:" in err
    assert "daemon_started" not in out


async def test_check_exits_0_for_a_good_config_and_78_for_a_bad_one(
    tmp_path: Path, simulator: Simulator
) -> None:
    """`smsbridge check` says OK and exits 0, or prints the report and exits 78."""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(config_text(tmp_path, simulator.url))
    bad.write_text(config_text(tmp_path, simulator.url, rules=BROKEN_RULES))
    code, out, _ = await cli("check", "-c", str(good))
    assert (code, out.startswith(f"{good}: OK")) == (0, True)
    code, out, err = await cli("check", "-c", str(bad))
    assert code == EXIT_CONFIG
    assert f"error: {bad} has 2 problems" in err
