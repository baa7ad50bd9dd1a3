"""Reading the gateway key from its file, and replacing that file so a crash never loses the key."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pydantic import SecretStr

from bridge.config import os_reason
from bridge.plugins.c123.errors import InvalidRequestError
from bridge.plugins.c123.validation import check_key


class KeyFileError(ValueError):
    """The key file cannot be read or holds no valid key: a config problem, never retried.

    The message names the file and what is wrong with it, never the key.
    """


def read_key(path: Path) -> SecretStr:
    """The key stored in a file (surrounding white space ignored); KeyFileError if unusable."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise KeyFileError(f"cannot read the key file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {os_reason(exc)}") from None
    if not key:
        raise KeyFileError(f"the key file {path} is empty")
    try:
        check_key(key)
    except InvalidRequestError as exc:
        raise KeyFileError(f"the key in {path} {exc.problem}") from None
    return SecretStr(key)


class KeyNotSavedError(OSError):
    """The gateway issued a new key but it could not be written; the old key no longer works.

    The key is kept in `new_key` (a SecretStr), never in the message, so the operator's command
    can show it once on a terminal instead of losing it.
    """

    def __init__(self, path: Path, cause: OSError, new_key: SecretStr) -> None:
        super().__init__(f"the new key could not be written to {path}: {os_reason(cause)}")
        self.path = path
        self.new_key = new_key


def probe_writable(path: Path) -> None:
    """Raise OSError unless a file can be created beside `path` (where the key will be written)."""
    if path.is_dir():
        # The probe beside it would pass, and the rename onto it fail after the key changed.
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    probe = path.parent / f".{path.name}.{os.getpid()}.probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()


def _owner(path: Path) -> tuple[int, int] | None:
    """The owner to give the new file: the old file's, when root replaces someone else's."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if os.geteuid() != 0 or (info.st_uid, info.st_gid) == (0, 0):
        return None
    return info.st_uid, info.st_gid


def write_key(path: Path, key: str) -> None:
    """Replace the key file atomically: temp file, fsync, rename, fsync the directory; mode 0600.

    The gateway forgets the old key the moment it issues a new one, so the new key must be on
    disk before anything else happens: a torn or lost write would lock the account out. A file
    replaced by root keeps its owner.
    """
    directory = path.parent
    temp = directory / f".{path.name}.{os.getpid()}.tmp"
    owner = _owner(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have narrowed it; make sure it is exactly 0600
        if owner is not None:
            # root rewrites the file of a service user (systemd's DynamicUser): the daemon
            # must still be able to read the new key.
            os.fchown(fd, *owner)
        os.write(fd, f"{key}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
