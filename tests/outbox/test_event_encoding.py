"""Stored events: compact (a preset dictionary), and every form a store holds reads back."""

from __future__ import annotations

import json
import sqlite3
import zlib
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bridge.events import Conversation, Event, EventKind, Status
from bridge.outbox import jobs as outbox
from bridge.outbox.compression import compress, decompress
from bridge.store import SqliteStore

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
events = st.builds(
    Event,
    kind=st.sampled_from(EventKind),
    source=texts,
    labels=st.dictionaries(texts, texts, max_size=6),
    text=texts,
    data=st.dictionaries(texts, json_values, max_size=4),
    fingerprint=texts,
    status=st.sampled_from(Status),
    conversation=st.none() | st.builds(Conversation, output=texts, channel=texts, thread=texts),
    received_at=st.datetimes(timezones=st.just(UTC)),
)


@given(events)
def test_an_event_reads_back_as_it_was_stored(event: Event) -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT, received_at REAL)")
    event_id = outbox.add_event(conn, event)
    assert outbox.get_event(conn, event_id) == event


@given(st.binary(max_size=2000))
def test_compression_round_trips_any_bytes(data: bytes) -> None:
    assert decompress(compress(data)) == data


def alert_event(n: int) -> Event:
    """An Alertmanager alert as the alertmanager input makes it (labels, annotations, group)."""
    labels = {
        "alertname": f"HighErrorRate{n}",
        "severity": "critical",
        "namespace": "shop",
        "job": "api",
        "instance": f"10.0.0.{n}:8080",
    }
    annotations = {
        "summary": f"5xx above 5% on api instance 10.0.0.{n}",
        "description": "The error ratio over 10 minutes is above the objective.",
    }
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": "2026-12-01T10:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up&g0.tab=1",
        "fingerprint": f"{n:016x}",
    }
    group = {
        "groupKey": '{}/{}:{alertname="HighErrorRate"}',
        "status": "firing",
        "receiver": "sms",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "truncatedAlerts": 0,
    }
    return Event(
        kind=EventKind.ALERT,
        source="am",
        labels=labels,
        text=annotations["summary"],
        data={"alert": alert, "annotations": annotations, "group": group},
        fingerprint=f"{n:016x}",
        received_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )


def test_an_alert_is_stored_smaller_than_plain_zlib_makes_it() -> None:
    event = alert_event(7)
    text = json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
    stored = outbox.encode_event(event)
    assert len(stored) < 0.85 * len(zlib.compress(text, 6))
    assert json.loads(decompress(stored)) == event.to_json()


async def test_events_stored_before_the_dictionary_still_read(tmp_path: Path) -> None:
    """A store holds events compressed without the dictionary, and older ones as plain JSON
    text: both read back beside new ones, through the same path every reader uses."""
    old, older, new = alert_event(1), alert_event(2), alert_event(3)
    text = json.dumps(old.to_json(), ensure_ascii=False, default=str, separators=(",", ":"))
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    try:

        def write(conn: sqlite3.Connection) -> list[int]:
            insert = "INSERT INTO events (body, received_at) VALUES (?, ?)"
            return [
                int(conn.execute(insert, (zlib.compress(text.encode(), 6), 0.0)).lastrowid or 0),
                int(conn.execute(insert, (json.dumps(older.to_json()), 0.0)).lastrowid or 0),
                outbox.add_event(conn, new),
            ]

        ids = await store.write(write)
        found = await store.read(lambda conn: [outbox.get_event(conn, i) for i in ids])
    finally:
        await store.close()
    assert found == [old, older, new]
