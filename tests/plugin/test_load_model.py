"""A webhook body validated straight from its bytes reads exactly as the long way reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.plugin import load_json, load_model, validation_message
from bridge.plugins.alertmanager.payload import Payload


def the_long_way(body: bytes) -> Payload | str:
    """What the alertmanager input did before: parse, then validate the document."""
    try:
        raw = load_json(body)
        if not isinstance(raw, dict):
            return "the body: expected an object"
        return Payload.model_validate(raw)
    except ValidationError as exc:
        return validation_message(exc)
    except ValueError as exc:
        return str(exc)


def outcome(body: bytes) -> Payload | str:
    try:
        return load_model(Payload, body)
    except ValueError as exc:
        return str(exc)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
alerts = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved", "other"]) | scalars},
    optional={
        "labels": st.dictionaries(st.text(max_size=6), st.text(max_size=6) | scalars),
        "fingerprint": st.text(max_size=8),
    },
)
payloads = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", "3"]) | scalars,
        "groupKey": st.text(max_size=8) | scalars,
        "status": st.sampled_from(["firing", "resolved"]) | scalars,
        "alerts": st.lists(alerts | documents, max_size=3) | scalars,
    },
    optional={"truncatedAlerts": st.integers(-2, 5) | scalars, "extra": documents},
)


def encode(document: Any) -> bytes:
    # allow_nan: Python writes NaN and Infinity, which the long way refuses with a 400.
    return json.dumps(document, allow_nan=True).encode()


@given(payloads | documents)
@example({"version": "4", "groupKey": "g", "status": "firing", "alerts": [{"x": float("nan")}]})
@example({"version": "4", "groupKey": "g", "status": "firing", "alerts": ["\ud800"]})
@example({"version": "4", "groupKey": "g", "status": "firing", "alerts": [], "n": 10**40})
def test_a_body_reads_as_the_long_way_reads_it(document: Any) -> None:
    body = encode(document)
    assert outcome(body) == the_long_way(body)


@given(
    st.binary(max_size=60) | st.text(max_size=30).map(lambda text: f'{{"k": "{text}"}}'.encode())
)
def test_any_bytes_read_as_the_long_way_reads_them(body: bytes) -> None:
    assert outcome(body) == the_long_way(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": "4", "groupKey": "g", "status": "firing", "alerts": [], "x": NaN}',
        b'{"version": "4", "groupKey": "g", "status": "firing", "alerts": [], "x": -Infinity}',
        b'{"version": "4", "groupKey": "g\\udc00", "status": "firing", "alerts": []}',
        '{"version": "4", "groupKey": "g", "status": "firing", "alerts": []}'.encode("utf-16"),
        b'{"version": "4", "groupKey": "g", "status": "firing", "alerts": [] ',
    ],
)
def test_bodies_only_the_long_way_reads_right(body: bytes) -> None:
    """NaN is refused, a lone surrogate replaced, UTF-16 decoded, a torn body named."""
    assert outcome(body) == the_long_way(body)
