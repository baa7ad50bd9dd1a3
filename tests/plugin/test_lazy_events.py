"""LazyEvents: counted now, made once when first read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.events import Event, EventKind
from bridge.plugin import LazyEvents


def made(count: int, calls: list[int]) -> LazyEvents:
    def make() -> list[Event]:
        calls.append(count)
        return [Event(kind=EventKind.ALERT, source="am", text=str(n)) for n in range(count)]

    return LazyEvents(count, make)


@given(count=st.integers(0, 20), index=st.integers(-25, 25))
def test_events_read_like_the_list_they_are_made_once(count: int, index: int) -> None:
    calls: list[int] = []
    events = made(count, calls)
    assert len(events) == count
    assert calls == []  # counting makes nothing
    assert [event.text for event in events] == [str(n) for n in range(count)]
    if -count <= index < count:
        assert events[index].text == str(range(count)[index])
    else:
        with pytest.raises(IndexError):
            events[index]
    assert [event.text for event in events[1:3]] == [str(n) for n in range(count)][1:3]
    assert calls == [count]  # made once, however often read


def test_making_another_number_than_was_counted_is_an_error() -> None:
    events = LazyEvents(2, lambda: [Event(kind=EventKind.ALERT, source="am")])
    with pytest.raises(ValueError, match="made 1 events where 2 were counted"):
        list(events)
