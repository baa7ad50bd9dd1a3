"""The sd_notify protocol through a real NOTIFY_SOCKET: messages and their order."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.runtime.systemd import Notifier
from tests.unit_file import unit_environment

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket; collects every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    async def receive(self, timeout: float = 15.0) -> dict[str, str]:  # noqa: ASYNC109
        data = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self.sock, 4096), timeout
        )
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    async def until(self, field: str, timeout: float = 15.0) -> list[dict[str, str]]:  # noqa: ASYNC109
        """Messages up to and including the first that carries `field`."""
        seen = []
        while True:
            message = await self.receive(timeout)
            seen.append(message)
            if field in message:
                return seen


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.sock.close()


@pytest.fixture
async def daemon(
    tmp_path: Path, notify_socket: NotifySocket
) -> AsyncIterator[asyncio.subprocess.Process]:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
""")
    env = {
        **os.environ,
        **unit_environment(),  # as the unit runs it: optimized
        "NOTIFY_SOCKET": str(notify_socket.path),
        "WATCHDOG_USEC": "200000",
    }
    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        "run",
        "-c",
        str(config),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    yield proc
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_start_reload_stop_in_order(
    daemon: asyncio.subprocess.Process, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """READY once listening, watchdog pings, RELOADING then READY on SIGHUP, STOPPING on SIGTERM."""
    started = await notify_socket.until("READY")
    ready = started[-1]
    assert ready["STATUS"].startswith("serving on http://127.0.0.1:")
    assert "gateway built-in simulator" in ready["STATUS"]
    assert not any("READY" in m for m in started[:-1])
    assert "WATCHDOG" in (await notify_socket.until("WATCHDOG"))[-1]

    daemon.send_signal(signal.SIGHUP)
    reload = [m for m in await notify_socket.until("READY") if "WATCHDOG" not in m]
    assert "RELOADING" in reload[0]
    assert int(reload[0]["MONOTONIC_USEC"]) > 0
    assert reload[-1]["READY"] == "1"
    assert reload[-1]["STATUS"].startswith("serving on")

    (tmp_path / "config.yaml").write_text("server: {listn: 1}\n")
    daemon.send_signal(signal.SIGHUP)
    failed = [m for m in await notify_socket.until("READY") if "WATCHDOG" not in m]
    assert failed[-1]["STATUS"].startswith("reload failed, kept the previous config")

    daemon.send_signal(signal.SIGTERM)
    stopping = [m for m in await notify_socket.until("STOPPING") if "WATCHDOG" not in m]
    assert stopping[-1]["STOPPING"] == "1"
    assert await asyncio.wait_for(daemon.wait(), 15) == 0


def test_no_socket_no_messages() -> None:
    """Without NOTIFY_SOCKET the notifier is silent and sending does nothing."""
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    notifier.ready("x")  # must not raise
    assert notifier.watchdog_interval is None


def test_watchdog_for_another_process_is_ignored() -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours to ping."""
    notifier = Notifier.from_environ(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval is None
    mine = Notifier.from_environ(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert mine.watchdog_interval == 0.5


async def test_abstract_socket_address(tmp_path: Path) -> None:
    """An address starting with @ is in the abstract namespace, as systemd may give it."""
    name = f"smsbridge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        Notifier("@" + name).status("hello")
        listener.settimeout(5)
        assert listener.recv(100) == b"STATUS=hello"
