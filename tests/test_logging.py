"""Logging: the scrubber (secrets and numbers gone at any depth, other values untouched), and
one renderer for our events, libraries' records and Python warnings."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import string
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from bridge.logging import REDACTED, Scrubber, configure_logging
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
    SimulatorSettings,
)
from bridge.sms import mask_text

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
SKIPPED = "skipped: maximum number of running instances reached"

SECRET = "s3cr3t-Token-xyz"
NUMBER = "13912345678"
PLAIN = st.text(alphabet=string.ascii_letters + " =:/", max_size=12)

# Text that may carry the secret or the number, always apart from other digits (a longer run of
# digits is not a mobile number, and rightly stays as it is).
text = st.builds(
    lambda before, middle, after: f"{before} {middle} {after}",
    PLAIN,
    st.sampled_from(["", SECRET, NUMBER, f"+86{NUMBER}", f"{SECRET}{NUMBER}"]),
    PLAIN,
)
leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
value = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
events = st.dictionaries(st.text(min_size=1, max_size=8), value, max_size=6)


@given(events)
def test_nothing_secret_survives_at_any_depth(event: dict[str, Any]) -> None:
    scrubbed = Scrubber([SECRET])(None, "info", dict(event))
    rendered = json.dumps(scrubbed)
    assert SECRET not in rendered
    assert NUMBER not in rendered
    if SECRET in json.dumps(event):
        assert REDACTED in rendered


@given(events)
def test_values_without_text_pass_as_they_are(event: dict[str, Any]) -> None:
    scrubbed = Scrubber([SECRET])(None, "info", dict(event))
    assert scrubbed.keys() == event.keys()
    for key, original in event.items():
        if not isinstance(original, str | dict | list | tuple):
            assert scrubbed[key] is original
        elif isinstance(original, list | tuple):
            assert type(scrubbed[key]) is type(original)
            assert len(scrubbed[key]) == len(original)


def scrubbed_one_by_one(value: Any, secrets: list[str]) -> Any:
    """The scrubber's contract, spelled out: each string alone, secrets then numbers."""
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, REDACTED)
        return mask_text(value)
    if isinstance(value, dict):
        return {key: scrubbed_one_by_one(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrubbed_one_by_one(item, secrets) for item in value)
    return value


# Flat lines (what nearly every log line is) take the scrubber's one-search path.
flat_events = st.dictionaries(st.text(min_size=1, max_size=8), leaf | text, max_size=8)


@given(events | flat_events)
def test_a_line_is_scrubbed_as_each_string_alone_would_be(event: dict[str, Any]) -> None:
    secrets = [SECRET, "another-secret", "secret-within-s3cr3t-Token-xyz"]
    assert Scrubber(secrets)(None, "info", dict(event)) == scrubbed_one_by_one(event, secrets)


def test_a_number_is_masked_the_way_people_read_it() -> None:
    scrubbed = Scrubber()(None, "info", {"to": NUMBER, "detail": ["call +8613912345678 now"]})
    assert scrubbed == {"to": "139****5678", "detail": ["call 139****5678 now"]}


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Logging configured as the daemon's, into a buffer; put back to a quiet state after."""
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging(stream, json=True)
        try:
            yield stream
        finally:
            logging.captureWarnings(False)
            configure_logging(io.StringIO(), json=True)
            logging.captureWarnings(False)


def test_warnings_and_library_records_come_out_as_our_json(json_log: io.StringIO) -> None:
    """A Python warning and a library's error (with its traceback) are JSON lines like ours,
    each naming the logger it came from, never plain text on stderr."""
    structlog.get_logger().info("ours", n=1)
    warnings.warn("coroutine 'poll' was never awaited", RuntimeWarning, stacklevel=1)
    try:
        raise ValueError("bad request from 13912345678")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    ours, warning, error = lines
    assert (ours["event"], ours["n"]) == ("ours", 1)
    assert (warning["logger"], warning["level"]) == ("py.warnings", "warning")
    assert "RuntimeWarning: coroutine 'poll' was never awaited" in warning["event"]
    assert (error["logger"], error["level"]) == ("aiohttp.server", "error")
    assert "ValueError: bad request from 139****5678" in error["exception"]


async def test_a_hanging_poll_leaves_every_line_json_and_skips_nothing(tmp_path: Path) -> None:
    """`smsbridge run` whose reply poll (every second) hangs at the gateway: the scheduler only
    triggers supervised work, so no run is "skipped" in plain text; every line is JSON."""
    settings = SimulatorSettings(report_delay=0, rate_limit=None)
    async with Simulator(settings) as simulator:
        simulator.state.add_fault(Fault(FaultKind.DELAY, action=Action.GET_REPLY, seconds=2.5))
        config = tmp_path / "config.yaml"
        config.write_text(f"""
server: {{listen: "127.0.0.1:0", shutdown_timeout: 1s}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
gateway: {{base_url: {simulator.url}, account: {DEFAULT_ACCOUNT}, authkey: {DEFAULT_AUTHKEY}}}
polling: {{replies: 1s, reports: 1h, balance: 1h}}
contacts: {{alice: "15102110086"}}
rules: []
""")
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        proc = await asyncio.create_subprocess_exec(
            SMSBRIDGE,
            "run",
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        try:
            # A hung poll answered, then the next one asked: the clock ticked through the hang.
            await simulator.state.wait_for(
                lambda state: state.calls.get("getReply", 0) >= 2, timeout=30
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            out, errors = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    lines = out.decode().splitlines() + errors.decode().splitlines()
    entries = [json.loads(line) for line in lines]  # every line, stderr's too
    assert not [entry for entry in entries if SKIPPED in entry["event"]]
    assert entries[-1]["event"] == "daemon_stopped"
