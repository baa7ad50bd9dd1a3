"""The sd_notify protocol: READY, RELOADING, STOPPING, STATUS and WATCHDOG datagrams to systemd.

Ten lines of socket code rather than a dependency; without $NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping


class Notifier:
    """Tells systemd how the service is doing (systemd.service(5), sd_notify(3))."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """The notifier systemd asked for, or a silent one when it asked for none."""
        address = environ.get("NOTIFY_SOCKET") or None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # The watchdog is ours only if systemd named our process (or nobody).
        ours = not pid or pid == str(os.getpid())
        return cls(address, int(usec) if usec.isdigit() and ours else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> None:
        """Send one datagram of newline-separated FIELD=value lines; never raises."""
        if self._address is None:
            return
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]  # the abstract socket namespace
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall("\n".join(fields).encode())

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the config")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: finishing sends under way")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    async def watchdog(self, healthy: Callable[[], Awaitable[bool]]) -> None:
        """Ping the watchdog from the event loop while `healthy()` says so; runs until cancelled.

        Pinging from the loop itself means a wedged loop stops the pings and systemd restarts us.
        """
        if self.watchdog_interval is None or self._address is None:
            return
        while True:
            if await healthy():
                self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
