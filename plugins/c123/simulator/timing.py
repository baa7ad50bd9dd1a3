"""Time for the simulator: injectable clocks, and a clock tests move by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]


def utcnow() -> datetime:
    """The real wall clock, time zone aware."""
    return datetime.now(UTC)


class ManualClock:
    """Wall and monotonic time that move only when advanced: pass as clock= and monotonic=."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()
        self.ticks = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        """The monotonic reading, in seconds."""
        return self.ticks

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self.now += timedelta(seconds=seconds)
        self.ticks += seconds
