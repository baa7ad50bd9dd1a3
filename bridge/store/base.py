"""The Store interface both backends implement: units of work written, read, maintained."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bridge.store.connection import Connection, Dialect
from bridge.store.migrations import Migration

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Notification:
    """A wake-up another writer sent on a channel (`Store.notify`)."""

    channel: str
    payload: str


class Store(Protocol):
    """A durable store: every read and write is a unit of work, a sync function of a Connection.

    `write` runs a unit in a transaction and returns once it is committed; `read` sees the last
    committed state; `maintain` runs a unit outside any transaction. `notify` wakes whoever
    listens on a channel through `notifications` (every instance on a shared database).
    """

    dialect: Dialect
    commits: int  # transactions committed, for metrics and tests
    migrated: list[Migration]  # schema steps open() applied
    last_commit_error: str | None  # why the last commit failed; None once one works

    @property
    def is_open(self) -> bool: ...

    @property
    def problem(self) -> str:
        """Why the store cannot take writes ('' when it can, as far as the last commit shows)."""
        ...

    @property
    def where(self) -> str:
        """The store's location for people (a path, or a URL without its password)."""
        ...

    def open_error(self, exc: BaseException) -> Exception:
        """The StoreOpenError that says why `exc` keeps the store from being used at start."""
        ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, work: Callable[[Connection], T], *, pure: bool = False) -> T: ...
    async def read(self, work: Callable[[Connection], T]) -> T: ...
    async def maintain(self, work: Callable[[Connection], T]) -> T: ...
    async def notify(self, channel: str, payload: str = "") -> None: ...
    def notifications(self, *channels: str) -> AsyncIterator[Notification]: ...
