"""The account's key as of now: the config's, or the key file's, re-read when the file changes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bridge.logging import SCRUBBER
from bridge.plugins.c123.keyfile import KeyFileError, read_key


def key_digest(key: str) -> str:
    """What the store and the logs may know of a key: its SHA-256, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Key:
    """One key and its digest."""

    secret: SecretStr
    digest: str

    @classmethod
    def of(cls, secret: SecretStr) -> Key:
        return cls(secret, key_digest(secret.get_secret_value()))


class KeySource:
    """Hands out the current key; with a key file, a stat per call notices a rewrite.

    An operator who fixes the file (or `rotate-key`, which replaces it) is heard on the next
    call, without a restart. A file that does not hold a well-formed key raises KeyFileError:
    a half-written or mistyped key never reaches the gateway.
    """

    def __init__(self, inline: SecretStr | None = None, path: Path | None = None) -> None:
        if (inline is None) == (path is None):
            raise ValueError("a key source is either a key or a key file")
        self.path = path
        self._key = Key.of(inline) if inline is not None else None
        self._signature: tuple[int, int, int] | None = None
        self._problem = ""
        if self._key is not None:
            SCRUBBER.add_secret(self._key.secret.get_secret_value())

    def current(self) -> Key:
        """The key to use now; raises KeyFileError while the file holds none."""
        if self.path is not None:
            self._refresh(self.path)
        if self._key is None:
            raise KeyFileError(self._problem or "no key read yet")
        return self._key

    def adopt(self, secret: SecretStr) -> Key:
        """Use `secret` from now on (a rotation wrote it to the file, or there is no file)."""
        self._key = Key.of(secret)
        SCRUBBER.add_secret(secret.get_secret_value())
        if self.path is not None:
            try:
                self._signature = _signature(self.path)
            except OSError:
                self._signature = None  # read again on the next call
        return self._key

    def _refresh(self, path: Path) -> None:
        try:
            signature = _signature(path)
        except OSError as exc:
            self._fail(None, f"cannot read the key file {path}: {exc.strerror or exc}")
            return
        if signature == self._signature:
            return
        try:
            secret = read_key(path)  # says why without the content
        except KeyFileError as exc:
            self._fail(signature, str(exc))
            return
        self._signature, self._problem = signature, ""
        self._key = Key.of(secret)
        SCRUBBER.add_secret(secret.get_secret_value())

    def _fail(self, signature: tuple[int, int, int] | None, problem: str) -> None:
        # The old key is not used either: the operator meant to replace it.
        self._signature, self._key, self._problem = signature, None, problem


def _signature(path: Path) -> tuple[int, int, int]:
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns
