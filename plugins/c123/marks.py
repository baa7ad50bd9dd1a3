"""An account's marks, kept where every process sees them: wrong keys, a pause, a key rotation.

The daemon and the command line share the store's settings table, so a key one of them found
wrong is never used by the other, and `rotate-key` can ask the daemon to stop its calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Self

from bridge.store import Connection, Store, ledger


class Marks(Protocol):
    """Named text values; an empty text is the same as no value."""

    shared: bool  # seen by other processes (the daemon, the command line)

    async def load(self, names: Sequence[str]) -> dict[str, str]: ...

    async def save(self, values: Mapping[str, str]) -> None: ...


class MemoryMarks:
    """Marks that live as long as this process: for a client without a store."""

    shared = False

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def load(self, names: Sequence[str]) -> dict[str, str]:
        return {name: self.values.get(name, "") for name in names}

    async def save(self, values: Mapping[str, str]) -> None:
        self.values.update(values)


class StoreMarks:
    """Marks in the store's settings table, seen by every process that opens the store."""

    shared = True

    def __init__(self, store: Store) -> None:
        self.store = store

    async def load(self, names: Sequence[str]) -> dict[str, str]:
        def read(conn: Connection) -> dict[str, str]:
            return {name: ledger.get_setting(conn, name) or "" for name in names}

        return await self.store.read(read)

    async def save(self, values: Mapping[str, str]) -> None:
        def write(conn: Connection) -> None:
            for name, value in values.items():
                ledger.put_setting(conn, name, value)

        await self.store.write(write)


class _Record:
    """A mark stored as one JSON object; unreadable text reads as no mark."""

    def text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)  # type: ignore[call-overload]

    @classmethod
    def parse(cls, text: str) -> Self | None:
        if not text:
            return None
        try:
            fields: Any = json.loads(text)
            return cls(**fields)
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class Pause(_Record):
    """Why the account takes no calls, and when it is probed again (None: when the key changes)."""

    reason: str  # an account-fault name: wrong_key, key_locked, no_such_account, ...
    detail: str  # for people
    since: float
    probe_at: float | None = None


@dataclass(frozen=True, slots=True)
class Rotation(_Record):
    """`rotate-key` is replacing the key: other processes make no call until `until`."""

    id: str
    until: float


@dataclass(frozen=True, slots=True)
class RotationAck(_Record):
    """The daemon saw rotation `id`: it stopped taking calls, and (stopped) has none in flight."""

    id: str
    stopped: bool


@dataclass(frozen=True, slots=True)
class MarkNames:
    """The setting names of one account's marks."""

    account: str

    @property
    def pause(self) -> str:
        return f"c123.{self.account}.pause"

    @property
    def rotation(self) -> str:
        return f"c123.{self.account}.rotation"

    @property
    def rotation_ack(self) -> str:
        return f"c123.{self.account}.rotation_ack"

    @property
    def proven(self) -> str:
        """The digest of the key a getBalance last proved: other processes need not prove it."""
        return f"c123.{self.account}.proven"

    def wrong_key(self, digest: str) -> str:
        return f"c123.{self.account}.wrong_key.{digest}"
