"""A contact's quiet hours: when pages that may wait are held, and when the window ends."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, model_validator

from bridge.config import ConfigModel, TimeZoneName
from bridge.rules.localtime import as_utc, next_clock_change, to_instant, wall_time
from bridge.rules.matchers import ALL_DAYS, Hours, Window

_DAY_MINUTES = 24 * 60


def as_list(value: Any) -> Any:
    # `allow: critical` reads as well as `allow: [critical]`; YAML reads `allow: 1` as a number.
    items = [value] if isinstance(value, str | int) else value
    if isinstance(items, list):
        return [str(i) if isinstance(i, int) and not isinstance(i, bool) else i for i in items]
    return items


Listed = Annotated[list[str], BeforeValidator(as_list)]


class QuietHours(ConfigModel):
    """Hours in which pages that may wait are held, and released as one digest when they end."""

    hours: Hours  # local hours, e.g. `23:00-07:00` (an end before the start runs past midnight)
    timezone: TimeZoneName  # the contact's zone
    # Severities that still go through; none: those in `oncall.critical`.
    allow: Listed | None = None

    @model_validator(mode="after")
    def _leaves_time(self) -> Self:
        if self.hours.start == 0 and self.hours.end in (0, _DAY_MINUTES):
            raise ValueError("quiet hours cannot take the whole day: pages would never go out")
        return self

    @property
    def _window(self) -> Window:
        return Window(ALL_DAYS, self.hours, self.timezone)

    def contains(self, instant: datetime) -> bool:
        """Whether `instant` (aware) falls inside the quiet hours."""
        return self._window.contains(as_utc(instant))

    def window_end(self, instant: datetime) -> datetime:
        """The first instant at or after `instant` (aware) outside the quiet hours, in UTC.

        An end time that clocks skip is the instant of the change; clocks going back out of the
        hours (or into them again) count as the wall clock says.
        """
        at = as_utc(instant)
        for _ in range(4):  # each round ends the search or passes a clock change
            if not self.contains(at):
                break
            end = self._wall_end(at)
            change = next_clock_change(at, end, self.timezone)
            # Where the clock jumps, look again from where it lands: it may land inside.
            at = end if change is None else change
        return at

    def _wall_end(self, instant: datetime) -> datetime:
        """When clocks next show the end of the hours that hold `instant`."""
        local = wall_time(instant, self.timezone)
        minute = local.hour * 60 + local.minute
        day = local.date()
        if self.hours.wraps and minute >= self.hours.start:
            day += timedelta(days=1)
        end = datetime.combine(day, time()) + timedelta(minutes=self.hours.end)
        found = to_instant(end, self.timezone)
        if found <= instant:  # inside the second run of a repeated hour: its end comes again
            found = end.replace(tzinfo=self.timezone, fold=1).astimezone(UTC)
        return found

    def lets_through(self, severity: str, critical: Collection[str]) -> bool:
        """Whether a page of `severity` goes out inside the quiet hours."""
        return severity in (critical if self.allow is None else self.allow)
