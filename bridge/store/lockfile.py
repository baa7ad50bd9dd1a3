"""One daemon per SQLite file: an exclusive flock on the file, held while the daemon runs.

Two daemons on one file would each poll the gateway's destructive reads and steal each other's
replies; several instances need PostgreSQL. The lock goes with the process, so a daemon that
dies, however it dies, frees the file for the next. SQLite's own locks are POSIX record locks,
which flock does not touch; the descriptor is closed only after the store is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class StoreLockedError(Exception):
    """Another daemon runs on this SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"another smsbridge daemon runs on the store {path}: one daemon per SQLite file "
            "(two would steal each other's replies from the gateway); stop it first, or run "
            "several instances on PostgreSQL"
        )


class StoreLock:
    """The exclusive lock on a store file; `acquire` raises StoreLockedError when taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock. A file that cannot be opened at all is left to the store's own
        open, which says why (a read-only disk, no permission) better than a lock could."""
        try:
            if self.path.exists():
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(self.path) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
