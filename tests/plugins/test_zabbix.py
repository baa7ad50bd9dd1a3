"""The zabbix input and its media-type script: what the script posts becomes Events."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

import bridge.plugins.zabbix
from bridge.events import Event, EventKind, Status
from bridge.plugins.zabbix import ZabbixConfig, ZabbixInput
from bridge.plugins.zabbix.payload import PayloadError, read_payload
from bridge.testing import DaemonFactory, RecordingSubmit, ServeInput, post_json

PAYLOADS = Path(__file__).parent / "payloads"
SCRIPT = Path(bridge.plugins.zabbix.__file__).parent / "media_type.js"
TOKEN = "zabbix-token-0123456789"
JSON = {"Content-Type": "application/json"}
BEARER = {**JSON, "Authorization": f"Bearer {TOKEN}"}
NODE = shutil.which("node") or shutil.which("nodejs")


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"zabbix_{name}.json").read_bytes())
    return data


Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def serve(serve_input: ServeInput) -> Serve:
    """Mount a zabbix input at /hooks/zabbix in a real aiohttp app and return a client."""

    async def start(**config: Any) -> Client:
        config.setdefault("auth", {"token": TOKEN})
        return await serve_input(ZabbixInput, "zabbix", config)

    return start


async def post(client: Client, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post("/hooks/zabbix", data=data, headers=headers or BEARER) as r:
        return r.status, await r.json()


async def test_problem_becomes_a_firing_event(serve: Serve, recorder: RecordingSubmit) -> None:
    """A problem is one firing Event: name, severity, host and tags as labels, message as text."""
    client = await serve()
    body = payload("problem")
    assert await post(client, body) == (200, {"accepted": 1, "duplicate": False, "rejected": []})
    (event,) = recorder.events
    assert (event.kind, event.source, event.status) == (EventKind.ALERT, "zabbix", Status.FIRING)
    assert event.labels == {
        "alertname": "High CPU load on web1",
        "severity": "High",
        "host": "web1",  # the tag "host: spoofed" does not replace it
        "instance": "web1",
        "service": "nginx",
        "team": "ops,web",
    }
    assert event.text.startswith("Problem started at 10:00:00 on 2024.05.01")
    assert event.data == {
        "event": body,
        "tags": {"service": "nginx", "team": "ops,web", "host": "spoofed"},
    }
    assert recorder.calls[-1][2] == 600.0


async def test_recovery_pairs_with_its_problem(serve: Serve, recorder: RecordingSubmit) -> None:
    """The recovery is resolved with the problem's fingerprint, under another dedupe key."""
    client = await serve()
    await post(client, payload("problem"))
    problem, problem_key = recorder.events[0], recorder.key
    await post(client, payload("recovery"))
    recovery = recorder.events[0]
    assert recovery.status is Status.RESOLVED
    assert recovery.fingerprint == problem.fingerprint
    assert len(problem.fingerprint) == 16
    assert recorder.key != problem_key


def key(body: dict[str, Any], source: str = "zabbix") -> str:
    return read_payload(body).dedupe_key(source)


def fingerprint(body: dict[str, Any]) -> str:
    return read_payload(body).fingerprint()


def changed(**fields: Any) -> dict[str, Any]:
    body = payload("problem")
    body.update(fields)
    return body


def test_fingerprint_is_trigger_and_host() -> None:
    """Another trigger or host is another alert; another event of the same trigger is not."""
    base = fingerprint(payload("problem"))
    assert fingerprint(changed(event_id="9999", message="again")) == base
    assert fingerprint(changed(trigger_id="1")) != base
    assert fingerprint(changed(host="web2")) != base
    no_trigger = changed(trigger_id="")
    assert fingerprint(no_trigger) == fingerprint({**no_trigger, "value": "0"})
    assert fingerprint(no_trigger) != fingerprint({**no_trigger, "event_id": "1"})


def test_dedupe_key() -> None:
    """A retry has the same key; another event, state, input or update message does not."""
    base = key(payload("problem"))
    assert key(changed(subject="re-rendered", time="later")) == base
    assert key(changed(event_id="4212")) != base
    assert key(changed(value="0")) != base
    assert key(payload("problem"), "zabbix2") != base
    first_ack = changed(update=True, message="acknowledged by alice")
    assert key(first_ack) != base
    assert key(changed(update=True, message="closing")) != key(first_ack)


async def test_update_is_labelled(serve: Serve, recorder: RecordingSubmit) -> None:
    """An update operation carries zabbix_update="1", so rules can leave it out."""
    client = await serve()
    await post(client, changed(update=True, message="ack: on it"))
    assert recorder.events[0].labels["zabbix_update"] == "1"
    assert recorder.events[0].status is Status.FIRING
    await post(client, payload("problem"))
    assert "zabbix_update" not in recorder.events[0].labels


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"value": 1}, Status.FIRING),
        ({"value": 0}, Status.RESOLVED),
        ({"value": None, "recovery": True}, Status.RESOLVED),
        ({"value": None, "recovery": False}, Status.FIRING),
        ({"value": "0", "recovery": True}, Status.RESOLVED),
    ],
)
def test_status_from_value_or_recovery(fields: dict[str, Any], status: Status) -> None:
    """EVENT.VALUE (text or number) or the recovery flag decides firing or resolved."""
    body = changed(**fields)
    body = {k: v for k, v in body.items() if v is not None}
    assert read_payload(body).status is status


async def test_text_falls_back_to_subject_then_name(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Without a message the subject is the text; without either, the event name."""
    client = await serve()
    await post(client, changed(message=""))
    assert recorder.events[0].text == "Problem: High CPU load on web1"
    minimal = {"event_id": 7, "value": "1", "name": "Ping lost", "trigger_id": 12}
    assert (await post(client, minimal))[0] == 200
    event = recorder.events[0]
    assert (event.text, event.labels) == ("Ping lost", {"alertname": "Ping lost"})
    assert event.data["event"]["event_id"] == 7


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body: expected an object"),
        ({"value": "1", "name": "x"}, "event_id: required"),
        ({"event_id": "1", "name": "x"}, 'value: required: "1" (problem) or "0" (recovery)'),
        ({"event_id": "1", "value": "2", "name": "x"}, "value: expected '0' or '1'"),
        ({"event_id": "1", "value": "1"}, "name: required"),
        ({"event_id": "1", "value": "1", "name": " "}, "name: must not be empty"),
        ({"event_id": "", "value": "1", "name": "x"}, "event_id: must not be empty"),
        (
            {"event_id": "1", "value": "1", "recovery": True, "name": "x"},
            "value '1' and recovery True disagree",
        ),
        ({"event_id": "1", "value": "1", "name": "x", "version": "2"}, "version: expected '1'"),
        ({"event_id": 1.5, "value": "1", "name": "x"}, "event_id: expected a string"),
        ({"event_id": "1", "value": True, "name": "x"}, "value: expected '0' or '1'"),
        (
            {"event_id": "1", "value": "1", "name": "x", "tags": [{"tag": 1}]},
            "tags[0].tag: expected a string",
        ),
        (
            {"event_id": "1", "value": "1", "name": "x", "tags": {"a": "b"}},
            "tags: expected a list",
        ),
    ],
)
async def test_unmappable_bodies_are_422(
    serve: Serve, recorder: RecordingSubmit, body: Any, message: str
) -> None:
    """JSON that is not the media type's shape gets a 422 naming the field."""
    client = await serve()
    status, answer = await post(client, body)
    assert status == 422
    assert answer["error"].startswith(message)
    assert recorder.calls == []


async def test_token_auth(serve: Serve, recorder: RecordingSubmit) -> None:
    """No bearer token is 401 with a challenge, a wrong one 403; neither is logged or echoed."""
    client = await serve()
    texts: list[str] = []
    with capture_logs() as logs:
        async with client.post("/hooks/zabbix", json=payload("problem")) as r:
            assert (r.status, r.headers["WWW-Authenticate"]) == (401, 'Bearer realm="smsbridge"')
            texts.append(await r.text())
        status, answer = await post(client, payload("problem"), {**JSON, "Authorization": "x"})
        assert status == 401
        for wrong in (f"Bearer {TOKEN}0", f"Bearer {TOKEN[:-1]}"):
            status, answer = await post(
                client, payload("problem"), {**JSON, "Authorization": wrong}
            )
            assert (status, answer) == (403, {"error": "the token was not accepted"})
            texts.append(json.dumps(answer))
    assert recorder.calls == []
    assert TOKEN not in repr(logs) + "".join(texts)


async def test_answers(serve: Serve, recorder: RecordingSubmit) -> None:
    """415, 400, 413, a duplicate's 200 and the store's 503 come from the shared helpers."""
    client = await serve(max_body=256)
    assert (await post(client, payload("problem"), {**BEARER, "Content-Type": "text/plain"}))[
        0
    ] == 415
    assert (await post(client, b"{"))[0] == 400
    assert (await post(client, payload("problem")))[0] == 413
    client = await serve()
    recorder.duplicate = True
    assert (await post(client, payload("problem")))[1]["duplicate"] is True
    recorder.fail = True
    assert (await post(client, payload("problem")))[0] == 503


async def test_unauthenticated_when_allowed(serve: Serve, recorder: RecordingSubmit) -> None:
    """With the explicit opt-out, a request without a token is taken."""
    client = await serve(auth=None, allow_unauthenticated=True)
    assert (await post(client, payload("problem"), JSON))[0] == 200


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "auth is required"),
        ({"auth": {"token": "t"}, "allow_unauthenticated": True}, "not both"),
        ({"auth": {"token": ""}}, "token must not be empty"),
        ({"auth": {}}, "token"),
        ({"auth": {"token": "t", "header": "X-Token"}}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    """Leaving auth out, an empty token and unknown keys are config errors."""
    with pytest.raises(ValidationError, match=message):
        ZabbixConfig.model_validate(config)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        *("event_id", "value", "recovery", "update", "name", "severity", "host", "trigger_id"),
        *("tags", "message", "subject", "version", "to", "recovery_id"),
    ]
)


@st.composite
def spoiled_payloads(draw: st.DrawFn) -> dict[str, Any]:
    body = payload(draw(st.sampled_from(["problem", "recovery"])))
    for _ in range(draw(st.integers(1, 3))):
        name = draw(FIELDS)
        if draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = draw(JSON_VALUES | st.sampled_from(["0", "1", 0, 1, True, False]))
    return body


def mapped(body: Any) -> Event | str:
    """The Event for a parsed body, or the 422 message."""
    try:
        return read_payload(body).event(body, "zabbix")
    except PayloadError as exc:
        return str(exc)


@given(body=JSON_VALUES | st.dictionaries(st.text(max_size=8), JSON_VALUES) | spoiled_payloads())
def test_mapping_never_raises_anything_else(body: Any) -> None:
    """Any JSON value is an Event with text labels and a fingerprint, or a 422 message."""
    result = mapped(body)
    if isinstance(result, str):
        assert result
        return
    assert result.labels["alertname"] == body["name"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.labels.items())
    assert result.text
    assert len(result.fingerprint) == 16
    assert result.status in (Status.FIRING, Status.RESOLVED)
    json.dumps(result.to_json())  # storable


# --- the media-type script, run under Node ---------------------------------------------------

# Node stands in for Zabbix: HttpRequest does one real, synchronous HTTP request per post() by
# running a child Node process (Zabbix's HttpRequest is synchronous too); Zabbix.log goes to
# stderr. The script runs as a function body taking `value`, as Zabbix runs it.
SHIM = r"""
const fs = require('fs');
const { spawnSync } = require('child_process');
const [scriptPath, parameters] = process.argv.slice(1);
const CHILD = `
  let input = '';
  process.stdin.on('data', (c) => { input += c; });
  process.stdin.on('end', () => {
    const { url, headers, body } = JSON.parse(input);
    const target = new URL(url);
    const request = require(target.protocol === 'https:' ? 'https' : 'http').request(
      target, { method: 'POST', headers }, (response) => {
        let answer = '';
        response.setEncoding('utf8');
        response.on('data', (c) => { answer += c; });
        response.on('end', () => {
          process.stdout.write(JSON.stringify({ status: response.statusCode, body: answer }));
        });
      });
    request.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });
    request.end(body);
  });
`;
function HttpRequest() { this.headers = {}; this.status = 0; this.proxy = null; }
HttpRequest.prototype.addHeader = function (line) {
  const at = line.indexOf(':');
  this.headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
};
HttpRequest.prototype.setProxy = function (proxy) { this.proxy = proxy; };
HttpRequest.prototype.post = function (url, body) {
  const child = spawnSync(process.execPath, ['-e', CHILD], {
    input: JSON.stringify({ url, headers: this.headers, body }), encoding: 'utf8',
  });
  if (child.status !== 0) { throw 'cannot connect: ' + child.stderr; }
  const answer = JSON.parse(child.stdout);
  this.status = answer.status;
  return answer.body;
};
HttpRequest.prototype.getStatus = function () { return this.status; };
const Zabbix = { log: (level, text) => process.stderr.write(`log ${level}: ${text}\n`) };
const run = new Function('value', 'HttpRequest', 'Zabbix', fs.readFileSync(scriptPath, 'utf8'));
try {
  process.stdout.write(String(run(parameters, HttpRequest, Zabbix)));
} catch (error) {
  process.stdout.write('THROWN: ' + error);
  process.exit(1);
}
"""

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: cannot run the script")


@dataclass
class Run:
    """What the script did: its exit code, its return value (or thrown text), its log."""

    code: int
    out: str
    log: str


async def run_script(parameters: dict[str, str]) -> Run:
    """Run media_type.js under Node with these media-type parameters (strings, as in Zabbix)."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        "-e",
        SHIM,
        str(SCRIPT),
        json.dumps(parameters),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def parameters(url: str, **changes: str) -> dict[str, str]:
    """The media type's parameters as Zabbix resolves them for a problem on web1."""
    values = {
        "URL": url,
        "Token": TOKEN,
        "HTTPProxy": "",
        "To": "+8615102110086",
        "Subject": "Problem: High CPU load on web1",
        "Message": "Problem started at 10:00:00 on 2024.05.01\nHost: web1",
        "EventID": "4211",
        "EventValue": "1",
        "EventUpdateStatus": "0",
        "EventName": "High CPU load on web1",
        "EventSeverity": "High",
        "EventTags": '[{"tag":"service","value":"nginx"},{"tag":"scope","value":""}]',
        "EventTime": "2024.05.01 10:00:00",
        "EventRecoveryID": "{EVENT.RECOVERY.ID}",  # unresolved in a problem, as Zabbix sends it
        "EventRecoveryTime": "{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}",
        "HostName": "web1",
        "TriggerID": "23711",
    }
    values.update(changes)
    return values


@needs_node
async def test_script_posts_what_the_input_takes(serve: Serve, recorder: RecordingSubmit) -> None:
    """The script's POST of a problem and then its recovery becomes a firing and resolved pair."""
    client = await serve()
    url = str(client.make_url("/hooks/zabbix"))
    problem = await run_script(parameters(url))
    assert (problem.code, problem.out) == (0, "OK"), problem.log
    (event,) = recorder.events
    assert event.status is Status.FIRING
    assert event.labels == {
        "alertname": "High CPU load on web1",
        "severity": "High",
        "host": "web1",
        "instance": "web1",
        "service": "nginx",
        "scope": "",
    }
    assert event.text == "Problem started at 10:00:00 on 2024.05.01\nHost: web1"
    assert event.data["event"]["recovery_id"] == ""  # the unresolved macro is sent empty
    assert event.data["event"]["recovery_time"] == ""
    assert event.data["event"]["to"] == "+8615102110086"
    assert event.data["event"]["update"] is False
    recovery = await run_script(
        parameters(
            url,
            EventValue="0",
            EventRecoveryID="4302",
            EventRecoveryTime="2024.05.01 10:12:40",
            Message="Resolved in 12m 40s",
        )
    )
    assert recovery.code == 0, recovery.log
    resolved = recorder.events[0]
    assert (resolved.status, resolved.fingerprint) == (Status.RESOLVED, event.fingerprint)
    assert resolved.data["event"]["recovery_id"] == "4302"
    assert TOKEN not in problem.log + recovery.log


@needs_node
async def test_script_throws_on_refusal_so_zabbix_retries(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """A 403, a 503 or a bad parameter makes the script throw with the answer, never the token."""
    client = await serve()
    url = str(client.make_url("/hooks/zabbix"))
    wrong = await run_script(parameters(url, Token="not-the-token"))
    assert wrong.code == 1
    assert wrong.out == (
        "THROWN: Sending to smsbridge failed: smsbridge answered HTTP 403: "
        '{"error": "the token was not accepted"}'
    )
    recorder.fail = True
    unavailable = await run_script(parameters(url))
    assert (unavailable.code, unavailable.out.split(": ")[2]) == (1, "smsbridge answered HTTP 503")
    not_a_value = await run_script(parameters(url, EventValue="{EVENT.VALUE}"))
    assert not_a_value.code == 1
    assert "EventValue must be {EVENT.VALUE}" in not_a_value.out
    no_url = await run_script(parameters("ftp://example"))
    assert "the URL parameter must be" in no_url.out
    assert recorder.calls == []
    assert TOKEN not in wrong.log + unavailable.log + not_a_value.log + no_url.log


@needs_node
async def test_script_survives_odd_tags_and_missing_macros(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Tags that are not JSON, a missing name and *UNKNOWN* values still make a valid POST."""
    client = await serve()
    url = str(client.make_url("/hooks/zabbix"))
    run = await run_script(
        parameters(
            url,
            EventTags="{EVENT.TAGSJSON}",
            EventName="{EVENT.NAME}",
            HostName="*UNKNOWN*",
            EventUpdateStatus="1",
        )
    )
    assert run.code == 0, run.log
    event = recorder.events[0]
    assert event.labels == {
        "alertname": "Problem: High CPU load on web1",  # the subject stands in for the name
        "severity": "High",
        "zabbix_update": "1",
    }
    not_json = await run_script(parameters(url, EventTags="service:nginx"))
    assert not_json.code == 0
    assert "EventTags is not JSON" in not_json.log
    assert "service" not in recorder.events[0].labels


def test_script_is_plain_es5_for_duktape() -> None:
    """Zabbix's Duktape has no let/const, arrow functions, template strings or classes."""
    code = re.sub(r"//[^\n]*", "", SCRIPT.read_text())
    for pattern in (r"\blet\s", r"\bconst\s", r"=>", "`", r"\bclass\s", r"\.\.\.\w"):
        assert not re.search(pattern, code), pattern
    assert "new HttpRequest()" in code
    assert "request.getStatus()" in code


CONFIG = """
contacts:
  oncall: "15102110086"
inputs:
  zabbix:
    type: zabbix
    auth: {token: zabbix-token-0123456789}
rules:
  - name: page
    match: {kind: alert, source: zabbix, matchers: ['zabbix_update!="1"']}
    sms:
      to: [oncall]
      template: "{{ status }} {{ labels.alertname }} [{{ labels.severity }}]"
"""


async def test_through_a_running_daemon(smsbridge_daemon: DaemonFactory) -> None:
    """A problem and its recovery sent to a real daemon page twice; an update does not page."""
    daemon = await smsbridge_daemon(CONFIG, types=[ZabbixInput])
    for body in (payload("problem"), changed(update=True, message="ack"), payload("recovery")):
        assert (await post_json(daemon, "/hooks/zabbix", body, BEARER))[0] == 200
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 2)
    assert [m.content for m in daemon.simulator.state.messages] == [
        "firing High CPU load on web1 [High]",
        "resolved High CPU load on web1 [High]",
    ]
    retry = await post_json(daemon, "/hooks/zabbix", payload("recovery"), BEARER)
    assert retry == (200, {"accepted": 1, "duplicate": True, "rejected": []})
