"""Log lines and metric updates decided inside a transaction, written once it commits."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any


class DeferredLog:
    """Log lines decided inside a transaction, written after it commits (never inside the write).

    The writer thread holds the store's one write lock while a transaction runs; rendering and
    writing a log line there would make every webhook's commit wait for it.
    """

    def __init__(self) -> None:
        self._lines: deque[tuple[str, str, dict[str, Any]]] = deque()
        self._counts: deque[Callable[[], None]] = deque()

    def count(self, update: Callable[[], None]) -> None:
        """A metric update that holds only if the transaction commits (made at the flush)."""
        self._counts.append(update)

    def info(self, event: str, **fields: Any) -> None:
        self._lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self._lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self._lines.append(("error", event, fields))

    def clear(self) -> None:
        """Forget lines (and metric updates) of a transaction that rolled back."""
        self._lines.clear()
        self._counts.clear()

    def flush(self, log: Any) -> None:
        while self._counts:
            self._counts.popleft()()
        while self._lines:
            level, event, fields = self._lines.popleft()
            getattr(log, level)(event, **fields)
