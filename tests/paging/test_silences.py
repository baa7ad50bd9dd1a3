"""`ack 2h`: the silence made in a real Alertmanager after the acknowledgement commits, the
answer saying whether it was made, and matchers that never silence everything."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.oncall import SilencesConfig
from bridge.paging.silences import (
    PENDING_TIMER,
    RETRY_AFTER,
    SilenceError,
    SilenceRequest,
    create_silence,
    group_matchers,
    silence_body,
)
from bridge.rules.matchers import escape_value
from bridge.runtime.daemon import Daemon
from bridge.runtime.loops import fire_paging_timers
from bridge.testing import DaemonFactory, post_json
from tests.e2e.alertmanager_process import ALERTMANAGER, free_port, running_alertmanager
from tests.paging.test_e2e import has, incident_state, notification, sent_to

A = "15102110086"
PAGE = "[#1] DiskFull - reply 1a to ack, 1c to close, 1e to escalate"
_fingerprints = itertools.count(100)


def config(alertmanager: str | None) -> str:
    silences = f"\n  alertmanager: {{url: {alertmanager}}}" if alertmanager else ""
    return f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts:
  alice: {{number: "{A}", name: Alice}}
oncall:
  ack_max: 3h
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
      report_timeout: 1h{silences}
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops, group_by: [alertname, severity]}}
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if ALERTMANAGER is None:
        pytest.skip("needs Debian's prometheus-alertmanager (./dev test installs it as root)")
    config = "route: {receiver: none}\nreceivers: [{name: none}]\n"
    with running_alertmanager(tmp_path, config) as url:
        yield url


async def silences_in(am: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):  # Alertmanager needs a moment to open its port
            try:
                async with http.get(f"{am}/api/v2/silences") as response:
                    assert response.status == 200
                    found: list[dict[str, Any]] = await response.json()
                    return found
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)
    raise AssertionError("Alertmanager did not start")


async def page_and_reply(daemon: Daemon, reply: str) -> list[tuple[str, str]]:
    """Page alice for DiskFull, let her reply; returns what was sent after the page."""
    assert daemon.simulator is not None
    state = daemon.simulator.state
    fingerprint = f"{next(_fingerprints):016x}"
    assert (await post_json(daemon, "/hooks/am", notification("firing", fingerprint)))[0] == 200
    await state.wait_for(has(1))
    assert sent_to(state) == [(A, PAGE)]
    state.inject_reply(A, reply)
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    await daemon.silencer.drain()
    await state.wait_for(has(2))
    return sent_to(state)[1:]


async def test_ack_2h_creates_a_silence_in_alertmanager(
    smsbridge_daemon: DaemonFactory, alertmanager: str
) -> None:
    """alice's `1a 2h` acknowledges, and Alertmanager then holds one active silence on the
    incident's group labels, ending about 2 h from now; her answer says so."""
    assert await silences_in(alertmanager) == []  # also waits for Alertmanager to listen
    daemon = await smsbridge_daemon(config(alertmanager))
    before = time.time()
    (answer,) = await page_and_reply(daemon, "1a 2h")
    assert answer[0] == A
    assert answer[1].startswith("acknowledged #1 DiskFull; silenced #1 until ")
    assert await incident_state(daemon) == "acknowledged"
    (silence,) = await silences_in(alertmanager)
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "smsbridge"
    assert silence["comment"] == "Alice acknowledged #1 DiskFull by SMS"
    matchers = {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]}
    assert matchers == {
        ("alertname", "DiskFull", False, True),
        ("severity", "critical", False, True),
    }
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00")).timestamp()
    assert before + 7200 - 5 <= ends <= time.time() + 7200 + 5


async def test_ack_3d_is_capped_by_ack_max(
    smsbridge_daemon: DaemonFactory, alertmanager: str
) -> None:
    assert await silences_in(alertmanager) == []
    daemon = await smsbridge_daemon(config(alertmanager))
    await page_and_reply(daemon, "ack 3d")
    (silence,) = await silences_in(alertmanager)
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00")).timestamp()
    assert abs(ends - (time.time() + 3 * 3600)) < 30  # oncall.ack_max, not three days


async def test_an_unreachable_alertmanager_keeps_the_ack_and_says_so(
    smsbridge_daemon: DaemonFactory,
) -> None:
    daemon = await smsbridge_daemon(config(f"http://127.0.0.1:{free_port()}"))
    (answer,) = await page_and_reply(daemon, "ack 2h")
    assert answer == (A, "acknowledged #1 DiskFull; no silence made for #1")
    assert await incident_state(daemon) == "acknowledged"


async def test_without_an_alertmanager_the_answer_says_no_silence(
    smsbridge_daemon: DaemonFactory,
) -> None:
    daemon = await smsbridge_daemon(config(None))
    (answer,) = await page_and_reply(daemon, "确认 2小时")
    assert answer == (
        A,
        "acknowledged #1 DiskFull; no silence made: no Alertmanager is configured",
    )


def test_group_labels_become_matchers_and_empty_values_are_left_out() -> None:
    key = 'critical{alertname="DiskFull",instance=""}'
    assert group_matchers(key, {"alertname": "DiskFull", "job": "node"}) == (
        ("alertname", "DiskFull"),
    )


def test_without_group_labels_the_alert_labels_are_used_and_nothing_means_nothing() -> None:
    assert group_matchers("critical{}", {"b": "2", "a": "1", "c": ""}) == (("a", "1"), ("b", "2"))
    assert group_matchers('critical{alertname=""}', {"alertname": ""}) == ()


def test_a_body_without_matchers_is_refused() -> None:
    request = SilenceRequest(1, "DiskFull", (), 0.0, "")
    with pytest.raises(SilenceError, match="every alert"):
        silence_body(request, 0.0)


class FakeAlertmanager:
    """Records the Authorization header of each silence posted, and answers as told."""

    def __init__(self, status: int, answer: Any) -> None:
        self.status, self.answer = status, answer
        self.authorization: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.authorization.append(request.headers.get("Authorization", ""))
        return web.json_response(self.answer, status=self.status)


async def post_to(fake: FakeAlertmanager, auth: dict[str, Any] | None) -> str:
    app = web.Application()
    app.router.add_post("/api/v2/silences", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        config = SilencesConfig.model_validate({"url": url, "auth": auth})
        request = SilenceRequest(1, "DiskFull", (("alertname", "DiskFull"),), time.time(), "")
        async with aiohttp.ClientSession() as session:
            return await create_silence(session, config, request, time.time())
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        (None, ""),
        ({"bearer": "am-token-123"}, "Bearer am-token-123"),
        ({"basic": {"username": "sms", "password": "pw"}}, "Basic c21zOnB3"),
    ],
)
async def test_the_configured_auth_is_sent(auth: dict[str, Any] | None, header: str) -> None:
    fake = FakeAlertmanager(200, {"silenceID": "abc"})
    assert await post_to(fake, auth) == "abc"
    assert fake.authorization == [header]


async def test_a_refusal_says_why_without_the_credentials() -> None:
    fake = FakeAlertmanager(400, "bad matchers")
    with pytest.raises(SilenceError, match="Alertmanager answered 400") as caught:
        await post_to(fake, {"bearer": "am-token-123"})
    assert "am-token-123" not in str(caught.value)


names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(st.dictionaries(names, values, min_size=1, max_size=4))
def test_any_group_key_gives_back_its_labels(labels: dict[str, str]) -> None:
    """A group key is written as Decision.group_key writes it: values escaped, in order."""
    key = "rule{" + ",".join(f'{n}="{escape_value(v)}"' for n, v in labels.items()) + "}"
    assert group_matchers(key, {}) == tuple(labels.items())


async def test_a_crash_between_the_ack_and_the_silence_still_makes_the_silence(
    smsbridge_daemon: DaemonFactory, alertmanager: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acknowledgement commits, then the daemon dies before Alertmanager was called (the
    silencer never runs): the pending-silence timer committed with the ack comes due, the
    silence is made, the answer sent once, and the timer is gone."""
    assert await silences_in(alertmanager) == []
    daemon = await smsbridge_daemon(config(alertmanager))
    assert daemon.simulator is not None
    state = daemon.simulator.state
    lost: list[object] = []
    monkeypatch.setattr(daemon.silencer, "submit", lost.append)  # the process died here
    fingerprint = f"{next(_fingerprints):016x}"
    assert (await post_json(daemon, "/hooks/am", notification("firing", fingerprint)))[0] == 200
    await state.wait_for(has(1))
    state.inject_reply(A, "1a 2h")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    assert len(lost) == 1
    assert await incident_state(daemon) == "acknowledged"
    assert await pending_silences(daemon) == 1
    assert await silences_in(alertmanager) == []

    monkeypatch.undo()  # the next daemon's silencer works
    later = time.time() + RETRY_AFTER + 1
    await fire_paging_timers(daemon.pipeline, daemon.store, lambda: later, daemon.log)
    await daemon.silencer.drain()
    await state.wait_for(has(2))
    (silence,) = await silences_in(alertmanager)
    assert silence["comment"] == "Alice acknowledged #1 DiskFull by SMS"
    assert sent_to(state)[1][1].startswith("acknowledged #1 DiskFull; silenced #1 until ")
    assert await pending_silences(daemon) == 0
    # Firing again finds nothing: one silence, one answer.
    await fire_paging_timers(daemon.pipeline, daemon.store, lambda: later + 600, daemon.log)
    await daemon.silencer.drain()
    assert len(await silences_in(alertmanager)) == 1
    assert len(state.messages) == 2


async def pending_silences(daemon: Daemon) -> int:
    def read(conn: Any) -> int:
        row = conn.execute("SELECT COUNT(*) AS n FROM timers WHERE kind = ?", (PENDING_TIMER,))
        return int(row.fetchone()["n"])

    return await daemon.store.read(read)
