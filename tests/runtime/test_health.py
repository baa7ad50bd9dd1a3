"""Honest health: a store whose disk fills and is freed, a read-only store, dead tasks.

The stores here live on real tmpfs mounts (tests run as root); where mounting is not allowed,
the tests skip and say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import bridge.runtime.health as health
from bridge.logging import configure_logging
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import Fault, FaultKind, SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import SMS_OUTPUT, load_settings
from bridge.runtime.supervisor import Backoff, TaskState
from bridge.runtime.systemd import Notifier
from bridge.store.sqlite import StoreOpenError
from bridge.testing import post_json

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
MOUNT, UMOUNT = shutil.which("mount"), shutil.which("umount")
A = "15102110086"
QUICK = Backoff(first=0.05, ceiling=0.2, healthy_after=0.5, give_up_after=1000)
WORKER = f"dispatch-{SMS_OUTPUT}"
_fingerprints = itertools.count()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of `size` mounted at `path` (skips the test where mounting is refused)."""
    if MOUNT is None or UMOUNT is None:
        pytest.skip("needs mount(8) to make a small or read-only file system")
    path.mkdir()
    done = subprocess.run(
        [MOUNT, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run([UMOUNT, "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    assert MOUNT is not None
    subprocess.run([MOUNT, "-o", "remount,ro", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system under `folder` to the last byte; returns the file that does it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as file:
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):  # ENOSPC: full at this granularity
                while file.write(b"\0" * size):
                    pass
    assert os.statvfs(folder).f_bavail == 0
    return filler


def config(folder: Path, store: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {store}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts: {{alice: "{A}"}}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], template: "{{{{ labels.alertname }}}}"}}
""")
    return path


def notification(name: str) -> dict[str, Any]:
    """An Alertmanager v4 notification firing one alert."""
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "status": "firing",
        "receiver": "sms",
        "groupLabels": {"alertname": name},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name},
                "annotations": {},
                "startsAt": "2026-11-25T00:00:00Z",
                "fingerprint": f"{next(_fingerprints):016x}",
            }
        ],
    }


async def fill_while_sending(daemon: Daemon, disk: Path) -> Path:
    """Fill the disk while a page's send is under way: its outcome cannot be recorded."""
    assert daemon.simulator is not None
    daemon.simulator.state.add_fault(Fault(FaultKind.DELAY, action=Action.SEND_ONCE, seconds=0.5))
    assert (await post_json(daemon, "/hooks/am", notification("InFlight")))[0] == 200

    def sending(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'sending'").fetchone()[0])

    async with asyncio.timeout(10):
        while not await daemon.store.read(sending):  # noqa: ASYNC110 - the store has no event
            await asyncio.sleep(0.01)
    return fill(disk)


async def readyz(daemon: Daemon) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/readyz") as response:
        return response.status, await response.json()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll a condition with a deadline (for what has no event to await)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - task states change without an event
            await asyncio.sleep(0.01)


@pytest.fixture
def log_lines() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    stream = io.StringIO()
    configure_logging(stream, json=True)

    def lines(event: str) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [line for line in found if line["event"] == event]

    yield lines
    configure_logging(io.StringIO(), json=True)


@pytest.fixture
async def started() -> AsyncIterator[list[Daemon]]:
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        await daemon.stop()


async def start(path: Path, started: list[Daemon]) -> Daemon:
    daemon = Daemon(
        load_settings(path),
        simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None),
        backoff=QUICK,
    )
    await daemon.start()
    started.append(daemon)
    return daemon


async def test_a_full_disk_is_survived_and_nothing_is_lost(
    tmp_path: Path, started: list[Daemon], log_lines: Callable[[str], list[dict[str, Any]]]
) -> None:
    """Finding 1: the disk fills while a send is under way, then is freed.

    While full: webhooks get a JSON 503 (not 200), the dispatcher's failure is logged with its
    traceback, counted and restarted, /readyz says why it is not ready. Once freed: the worker
    recovers, every accepted page goes out, /readyz is ready again.
    """
    with tmpfs(tmp_path / "disk", "4m") as disk:
        daemon = await start(config(tmp_path, disk / "outbox.sqlite3"), started)
        sim = daemon.simulator
        assert sim is not None
        assert await post_json(daemon, "/hooks/am", notification("Before")) == (
            200,
            {"accepted": 1, "duplicate": False, "rejected": []},
        )
        await sim.state.wait_for(lambda s: len(s.messages) == 1)

        filler = await fill_while_sending(daemon, disk)
        await until(lambda: daemon.supervisor.status()[WORKER].state is TaskState.FAILING)

        refused = []
        for name in ("During1", "During2", "During3"):
            status, body = await post_json(daemon, "/hooks/am", notification(name))
            assert (status, body) == (
                503,
                {"error": "the events could not be stored; try again later"},
            ), name
            refused.append(name)
        status, ready = await readyz(daemon)
        assert status == 503
        assert ready["ready"] is False
        assert ready["problems"]["store"].startswith("the last commit failed: database or disk")
        assert ready["problems"][f"task:{WORKER}"].startswith(
            "failing: StoreUnavailableError: commit failed: database or disk is full"
        )
        failed = [line for line in log_lines("task_failed") if line["task"] == WORKER]
        assert failed
        assert "Traceback" in failed[0]["exception"]
        restarts = daemon.metrics.registry.get_sample_value(
            "smsbridge_task_restarts_total", {"task": WORKER}
        )
        assert restarts is not None
        assert restarts >= 1

        filler.unlink()
        # Alertmanager retries what got 5xx; the worker restarts by itself.
        for name in refused:
            assert (await post_json(daemon, "/hooks/am", notification(name)))[0] == 200
        wanted = {"Before", "InFlight", *refused}
        await sim.state.wait_for(lambda s: wanted <= {m.content for m in s.messages}, timeout=15)
        async with asyncio.timeout(10):
            while (await readyz(daemon))[0] != 200:  # noqa: ASYNC110 - ready after a probation
                await asyncio.sleep(0.05)
        assert await readyz(daemon) == (200, {"ready": True, "problems": {}})
        unsettled = await daemon.store.read(
            lambda c: c.execute("SELECT count(*) FROM jobs WHERE state != 'sent'").fetchone()[0]
        )
        assert unsettled == 0
        await daemon.stop()
        started.clear()
        assert daemon.supervisor.status() == {}, "a clean stop leaves no task behind"


async def test_a_failing_poll_is_supervised_not_lost_in_the_scheduler(
    tmp_path: Path,
    started: list[Daemon],
    log_lines: Callable[[str], list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """APScheduler only triggers; a poll that cannot store its answer is a supervised failure
    (logged, reported, retried) and works again once the disk has room."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        path = config(tmp_path, disk / "outbox.sqlite3")
        path.write_text(path.read_text().replace("replies: 1h", "replies: 100ms"))
        daemon = await start(path, started)
        filler = fill(disk)
        await until(lambda: "poll-replies" in daemon.supervisor.problems())
        assert daemon.supervisor.problems()["poll-replies"].startswith(
            "failing: StoreUnavailableError: commit failed: database or disk is full"
        )
        assert any(line["task"] == "poll-replies" for line in log_lines("task_failed"))
        filler.unlink()
        await until(lambda: "poll-replies" not in daemon.supervisor.problems())
        assert daemon.supervisor.status()["poll-replies"].state is TaskState.RUNNING
        assert not [r for r in caplog.records if r.name.startswith("apscheduler")]


async def test_a_read_only_store_stops_the_start(tmp_path: Path, started: list[Daemon]) -> None:
    """Finding 9: no `daemon_started` then 500s; the start fails naming the path and why."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        store = disk / "outbox.sqlite3"
        path = config(tmp_path, store)
        await (await start(path, started)).stop()  # a store written by an earlier run
        started.clear()
        remount_read_only(disk)
        daemon = Daemon(load_settings(path), simulator_settings=SimulatorSettings())
        with pytest.raises(StoreOpenError) as caught:
            await daemon.start()
        assert str(caught.value) == (
            f"cannot use the store {store}: Read-only file system (unable to open database file)"
        )
        assert caught.value.transient is False
        assert daemon.port == 0, "nothing was served"


async def run_command(config_path: Path) -> tuple[int, str, bytes]:
    """`smsbridge run` to its end: exit code, stderr, stdout."""
    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        "run",
        "-c",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode(), out


async def test_the_command_exits_78_on_a_read_only_store(tmp_path: Path) -> None:
    """`smsbridge run` says so in one line and exits 78 (systemd does not restart it)."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        remount_read_only(disk)
        store = disk / "outbox.sqlite3"
        code, err, out = await run_command(config(tmp_path, store))
        assert code == 78
        assert err == (
            f"smsbridge run: cannot use the store {store}: "
            "Read-only file system (unable to open database file)\n"
        )
        assert b"daemon_started" not in out


async def test_the_command_exits_75_on_a_full_disk(tmp_path: Path) -> None:
    """A full disk at start exits 75: systemd restarts it until the disk has room."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        store = disk / "outbox.sqlite3"
        code, err, out = await run_command(config(tmp_path, store))
        assert code == 75
        assert err.startswith(f"smsbridge run: cannot use the store {store}: No space left")
        assert err.count("\n") == 1
        assert b"daemon_started" not in out


async def test_a_full_disk_at_start_is_transient(tmp_path: Path) -> None:
    """A full disk may pass by itself: the error says so (the command exits 75, not 78)."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        store = disk / "outbox.sqlite3"
        daemon = Daemon(
            load_settings(config(tmp_path, store)), simulator_settings=SimulatorSettings()
        )
        with pytest.raises(StoreOpenError) as caught:
            await daemon.start()
        assert caught.value.transient is True
        assert str(caught.value).startswith(
            f"cannot use the store {store}: No space left on device ("
        )


async def test_a_task_that_stays_failing_stops_the_watchdog(
    tmp_path: Path, started: list[Daemon]
) -> None:
    """A worker that failed for good makes /readyz say so and the watchdog go unfed, so
    systemd restarts the service."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        daemon = Daemon(
            load_settings(config(tmp_path, disk / "outbox.sqlite3")),
            simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None),
            backoff=Backoff(first=0.01, ceiling=0.01, healthy_after=10, give_up_after=3),
        )
        await daemon.start()
        started.append(daemon)
        await daemon.poller.poll_balance()  # the gateway is reached: only the task is wrong
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
            systemd.bind(str(tmp_path / "notify.sock"))
            systemd.setblocking(False)
            pings: list[float] = []
            pinged = asyncio.Event()

            async def listen() -> None:  # as systemd does: take every datagram as it comes
                loop = asyncio.get_running_loop()
                while True:
                    assert await loop.sock_recv(systemd, 64) == b"WATCHDOG=1"
                    pings.append(loop.time())
                    pinged.set()

            notifier = Notifier(str(tmp_path / "notify.sock"), watchdog_usec=40_000)
            assert notifier.watchdog_interval == 0.02
            listener = asyncio.create_task(listen())
            watchdog = asyncio.create_task(notifier.watchdog(partial(health.alive, daemon)))
            await asyncio.wait_for(pinged.wait(), 5)

            await fill_while_sending(daemon, disk)
            await until(lambda: WORKER in daemon.supervisor.dead())
            died = asyncio.get_running_loop().time()
            assert await health.alive(daemon) is False
            status, ready = await readyz(daemon)
            assert status == 503
            assert ready["problems"][f"task:{WORKER}"].startswith(
                "dead: StoreUnavailableError: commit failed: database or disk is full"
            )
            await asyncio.sleep(0.3)  # fifteen intervals: at most a ping already under way
            assert [t for t in pings if t > died + 0.05] == []
            for task in (watchdog, listener):
                task.cancel()
            await asyncio.gather(watchdog, listener, return_exceptions=True)
