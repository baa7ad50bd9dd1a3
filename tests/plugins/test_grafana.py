"""The grafana input: version-1 payloads in, Events and honest answer codes out."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from bridge.events import Event, EventKind, Status
from bridge.plugins.grafana import GrafanaConfig, GrafanaInput, grafana_signature
from bridge.plugins.grafana.payload import PayloadError, read_payload
from bridge.testing import DaemonFactory, RecordingSubmit, ServeInput, post_json

PAYLOADS = Path(__file__).parent / "payloads"
TOKEN = "grafana-token-0123456789"
PASSWORD = "grafana-password-9876543210"
SECRET = "grafana-hmac-secret-5550123"
JSON = {"Content-Type": "application/json"}
BEARER = {**JSON, "Authorization": f"Bearer {TOKEN}"}


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"grafana_{name}.json").read_bytes())
    return data


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def serve(serve_input: ServeInput) -> Serve:
    """Mount a grafana input at /hooks/grafana in a real aiohttp app and return a client."""

    async def start(**config: Any) -> Client:
        config.setdefault("auth", {"bearer": TOKEN})
        return await serve_input(GrafanaInput, "grafana", config)

    return start


async def post(
    client: Client, body: Any, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, Any]:
    sent = BEARER if headers is None else headers
    async with client.request(method, "/hooks/grafana", data=encode(body), headers=sent) as r:
        return r.status, await r.json()


def hmac_hex(body: bytes, timestamp: str | None = None) -> str:
    """Grafana's http/hmac.go, written out: hex HMAC-SHA256 over [timestamp ":"] body."""
    signed = body if timestamp is None else f"{timestamp}:".encode() + body
    return hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()


def signed(body: bytes, timestamp: str | None = None, **headers: str) -> dict[str, str]:
    """Headers as Grafana sends them for `body` with hmacConfig.secret = SECRET."""
    sent = {**JSON, "X-Grafana-Alerting-Signature": hmac_hex(body, timestamp)}
    if timestamp is not None:
        sent["X-Grafana-Alerting-Timestamp"] = timestamp
    return {**sent, **headers}


async def test_firing_payload_makes_one_event_per_alert(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Each alert becomes an Event with its labels, status, fingerprint, text, values and URLs."""
    client = await serve()
    body = payload("firing")
    assert await post(client, body) == (200, {"accepted": 2, "duplicate": False, "rejected": []})
    first, second = recorder.events
    assert all(e.kind is EventKind.ALERT and e.source == "grafana" for e in recorder.events)
    assert all(e.status is Status.FIRING for e in recorder.events)
    assert first.labels == body["alerts"][0]["labels"]
    assert [e.fingerprint for e in recorder.events] == ["3f9a2c7d1e5b8a04", "8d0e6b2a9c4f1357"]
    assert first.text == "Memory on db1 is 93% used"
    assert second.text == "db2 has used 91% of its memory for 5 minutes."  # no summary
    assert first.data["alert"] == body["alerts"][0]  # unknown fields (ruleUID) kept
    assert first.data["values"] == {"A": 93.4, "C": 1}
    assert second.data["values"] == {}  # Grafana's null
    assert first.data["valueString"].startswith("[ var='A'")
    assert first.data["urls"]["silence"].startswith("https://grafana.example/alerting/silence")
    assert first.data["urls"]["panel"].endswith("viewPanel=4")
    assert first.data["group"] == {
        "groupKey": body["groupKey"],
        "status": "firing",
        "receiver": "sms-oncall",
        "orgId": 1,
        "groupLabels": {"alertname": "HighMemory", "grafana_folder": "Infra"},
        "commonLabels": {"alertname": "HighMemory", "grafana_folder": "Infra", "severity": "page"},
        "commonAnnotations": {},
        "externalURL": "https://grafana.example/",
        "truncatedAlerts": 0,
        "title": "[FIRING:2] HighMemory Infra (page)",
        "state": "alerting",
        "message": body["message"],
    }
    assert recorder.calls[-1][2] == 4 * 3600.0


async def test_resolved_payload_pairs_with_the_firing_one(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """A resolved group gives resolved Events with the fingerprints of the firing ones."""
    client = await serve()
    assert (await post(client, payload("resolved")))[0] == 200
    assert [(e.status, e.fingerprint) for e in recorder.events] == [
        (Status.RESOLVED, "3f9a2c7d1e5b8a04"),
        (Status.RESOLVED, "8d0e6b2a9c4f1357"),
    ]
    assert recorder.events[0].data["group"]["state"] == "ok"


async def test_put_is_taken_like_post(serve: Serve, recorder: RecordingSubmit) -> None:
    """The contact point's httpMethod may be PUT; other methods are 405."""
    client = await serve()
    assert (await post(client, payload("firing"), method="PUT"))[0] == 200
    assert len(recorder.calls) == 1
    async with client.get("/hooks/grafana", headers=BEARER) as r:
        assert r.status == 405


async def test_truncated_group_is_taken_and_logged(serve: Serve, recorder: RecordingSubmit) -> None:
    """Alerts cut by maxAlerts are reported in a warning and the data; the rest go through."""
    client = await serve()
    body = payload("firing")
    body["truncatedAlerts"] = 3
    with capture_logs() as logs:
        assert (await post(client, body))[0] == 200
    assert recorder.events[0].data["group"]["truncatedAlerts"] == 3
    assert {"event": "alerts_truncated", "dropped": 3}.items() <= logs[0].items()


def key(body: dict[str, Any], source: str = "grafana") -> str:
    return read_payload(body).dedupe_key(source)


def test_repeated_delivery_has_the_same_dedupe_key() -> None:
    """A retry, with the alerts in another order, carries the same key."""
    body = payload("firing")
    reordered = copy.deepcopy(body)
    reordered["alerts"].reverse()
    reordered["message"] = "re-rendered text does not matter"
    assert key(reordered) == key(body)
    assert len(key(body)) == 64


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(status="resolved"),
        lambda b: b["alerts"][0].update(status="resolved"),
        lambda b: b["alerts"][1].update(fingerprint="ffffffffffffffff"),
        lambda b: b["alerts"][0].update(startsAt="2024-05-01T11:00:00+08:00"),
        lambda b: b["alerts"].pop(),
        lambda b: b.update(groupKey="{}:{}"),
    ],
    ids=["group-status", "alert-status", "fingerprint", "refired", "alert-gone", "group"],
)
def test_a_changed_delivery_has_another_dedupe_key(change: Callable[[Any], Any]) -> None:
    """A change of status, of an alert, or of the group is a new delivery and a new key."""
    body = payload("firing")
    changed = copy.deepcopy(body)
    change(changed)
    assert key(changed) != key(body)


def test_dedupe_key_is_per_input() -> None:
    """Two inputs receiving the same group do not suppress each other's deliveries."""
    assert key(payload("firing"), "grafana") != key(payload("firing"), "grafana2")


async def test_duplicate_and_store_answers(serve: Serve, recorder: RecordingSubmit) -> None:
    """A seen delivery is 200 with duplicate true; an unavailable store is 503, never 2xx."""
    client = await serve()
    recorder.duplicate = True
    assert (await post(client, payload("firing")))[1]["duplicate"] is True
    recorder.fail = True
    assert await post(client, payload("firing")) == (
        503,
        {"error": "the events could not be stored; try again later"},
    )


async def test_bearer_auth(serve: Serve, recorder: RecordingSubmit) -> None:
    """No token is 401 with a challenge, a wrong one 403, and neither is logged or echoed."""
    client = await serve()
    texts: list[str] = []
    with capture_logs() as logs:
        async with client.post("/hooks/grafana", json=payload("firing")) as r:
            assert (r.status, r.headers["WWW-Authenticate"]) == (401, 'Bearer realm="smsbridge"')
            texts.append(await r.text())
        for auth in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}"):
            status, answer = await post(client, payload("firing"), {**JSON, "Authorization": auth})
            texts.append(json.dumps(answer))
            assert status == (401 if auth.startswith("Token") else 403)
    assert recorder.calls == []
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == ["auth_failed"] * 4
    assert TOKEN not in repr(logs) + "".join(texts)
    assert (await post(client, payload("firing")))[0] == 200


async def test_basic_auth(serve: Serve, recorder: RecordingSubmit) -> None:
    """Basic credentials are checked in full; a malformed header is 401, a wrong one 403."""
    client = await serve(auth={"basic": {"username": "grafana", "password": PASSWORD}})

    def basic(user: str, password: str) -> dict[str, str]:
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {**JSON, "Authorization": f"Basic {encoded}"}

    with capture_logs() as logs:
        assert (await post(client, payload("firing"), basic("grafana", PASSWORD)))[0] == 200
        assert (await post(client, payload("firing"), basic("grafana", "nope")))[0] == 403
        assert (await post(client, payload("firing"), basic("root", PASSWORD)))[0] == 403
        malformed = {**JSON, "Authorization": "Basic not-base64!"}
        assert (await post(client, payload("firing"), malformed))[0] == 401
        no_colon = {**JSON, "Authorization": "Basic " + base64.b64encode(b"grafana").decode()}
        assert (await post(client, payload("firing"), no_colon))[0] == 401
    assert len(recorder.calls) == 1
    assert PASSWORD not in repr(logs)


def test_grafana_signature_helper_matches_the_scheme() -> None:
    """The helper signs as Grafana does: the body alone, or `<seconds>:<body>`."""
    assert grafana_signature(SECRET, b"{}") == hmac_hex(b"{}")
    assert grafana_signature(SECRET, b"{}", "1714528800") == hmac_hex(b"{}", "1714528800")
    # Vectors from `printf ... | openssl dgst -sha256 -hmac ...`.
    assert grafana_signature("key", b"body") == (
        "515aae133b435d4000956731f68ae5cf5eb85d4f0dc6a546d2bfcd3595ec1ae1"
    )
    assert grafana_signature(SECRET, b"{}", "1714528800") == (
        "c2222b47ed4a1b206e2e9962e133897a9d09f0b8935354808044d9e4f679f5f0"
    )


async def test_hmac_signature_of_the_body(serve: Serve, recorder: RecordingSubmit) -> None:
    """Bare hex HMAC-SHA256 of the raw body in X-Grafana-Alerting-Signature is taken, any case."""
    client = await serve(auth={"hmac": {"secret": SECRET}})
    body = encode(payload("firing"))
    assert (await post(client, body, signed(body)))[0] == 200
    upper = signed(body)
    upper["X-Grafana-Alerting-Signature"] = upper["X-Grafana-Alerting-Signature"].upper()
    assert (await post(client, body, upper))[0] == 200
    prefixed = signed(body)
    prefixed["X-Grafana-Alerting-Signature"] = "sha256=" + prefixed["X-Grafana-Alerting-Signature"]
    assert await post(client, body, prefixed) == (
        403,
        {"error": "the signature does not match the body"},
    )
    # The same JSON with other whitespace is other bytes: the signature covers the raw body.
    respaced = json.dumps(payload("firing"), indent=1).encode()
    assert (await post(client, respaced, signed(body)))[0] == 403
    assert len(recorder.calls) == 2


async def test_hmac_missing_signature_is_401_before_reading(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """An unsigned request gets 401 and a challenge naming the header."""
    client = await serve(auth={"hmac": {"secret": SECRET}})
    async with client.post("/hooks/grafana", data=encode(payload("firing")), headers=JSON) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == (
            'HMAC realm="smsbridge", header="X-Grafana-Alerting-Signature"'
        )
        assert await r.json() == {
            "error": "authentication required: sign the body in X-Grafana-Alerting-Signature"
        }
    assert recorder.calls == []


async def test_hmac_header_grafana_sends_when_left_empty(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """With the default header, http/hmac.go's X-Grafana-Alert-Signature is taken too."""
    body = encode(payload("firing"))
    fallback = {**JSON, "X-Grafana-Alert-Signature": hmac_hex(body)}
    client = await serve(auth={"hmac": {"secret": SECRET}})
    assert (await post(client, body, fallback))[0] == 200
    configured = await serve(auth={"hmac": {"secret": SECRET, "header": "X-Sig"}})
    assert (await post(configured, body, fallback))[0] == 401
    sig = {**JSON, "X-Sig": hmac_hex(body)}
    assert (await post(configured, body, sig))[0] == 200
    assert len(recorder.calls) == 2


async def test_hmac_with_timestamp(serve: Serve, recorder: RecordingSubmit) -> None:
    """With a timestamp header, `<seconds>:<body>` is signed and must be within max_skew."""
    client = await serve(
        auth={"hmac": {"secret": SECRET, "timestamp_header": "X-Grafana-Alerting-Timestamp"}}
    )
    body = encode(payload("firing"))
    now = str(int(time.time()))
    assert (await post(client, body, signed(body, now)))[0] == 200
    old = str(int(time.time()) - 600)
    status, answer = await post(client, body, signed(body, old))
    assert status == 403
    assert answer["error"].endswith("from this server's clock; at most 300 s is accepted")
    # A body-only signature, or one over another time, does not do.
    body_only = {**signed(body), "X-Grafana-Alerting-Timestamp": now}
    assert (await post(client, body, body_only))[0] == 403
    other_time = {**signed(body, now), "X-Grafana-Alerting-Timestamp": str(int(now) + 1)}
    assert (await post(client, body, other_time))[0] == 403
    missing = signed(body)
    assert await post(client, body, missing) == (
        401,
        {"error": "authentication required: send the signing time in X-Grafana-Alerting-Timestamp"},
    )
    for bad in ("soon", "1.5", "-1", "9" * 40):
        malformed = {**signed(body, now), "X-Grafana-Alerting-Timestamp": bad}
        assert (await post(client, body, malformed))[0] == 401
    assert len(recorder.calls) == 1


async def test_bearer_and_hmac_are_both_required_when_both_set(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Configuring a token and a signature asks for both."""
    client = await serve(auth={"bearer": TOKEN, "hmac": {"secret": SECRET}})
    body = encode(payload("firing"))
    assert (await post(client, body, signed(body)))[0] == 401
    assert (await post(client, body, BEARER))[0] == 401
    assert (await post(client, body, signed(body, None, Authorization=f"Bearer {TOKEN}")))[0] == 200
    assert len(recorder.calls) == 1


async def test_unauthenticated_when_allowed(serve: Serve, recorder: RecordingSubmit) -> None:
    """With the explicit opt-out, a request without credentials is taken."""
    client = await serve(auth=None, allow_unauthenticated=True)
    assert (await post(client, payload("firing"), JSON))[0] == 200


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "auth is required"),
        ({"auth": {"bearer": "t"}, "allow_unauthenticated": True}, "not both"),
        ({"auth": {}}, "set bearer"),
        ({"auth": {"bearer": "t", "basic": {"username": "u", "password": "p"}}}, "not both"),
        ({"auth": {"bearer": ""}}, "bearer must not be empty"),
        ({"auth": {"basic": {"username": "u", "password": ""}}}, "password must not be empty"),
        ({"auth": {"hmac": {"secret": ""}}}, "secret must not be empty"),
        ({"auth": {"hmac": {"secret": "s", "header": "X Sig"}}}, "should match pattern"),
        ({"auth": {"hmac": {"secret": "s", "max_skew": "0s"}}}, "max_skew"),
        ({"auth": {"bearer": "t"}, "token": "t"}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    """Leaving auth out, mixing schemes, empty secrets and unknown keys are config errors."""
    with pytest.raises(ValidationError, match=message):
        GrafanaConfig.model_validate(config)


def test_config_keeps_secrets_out_of_repr() -> None:
    """Secrets are SecretStr: neither repr nor a dump shows them."""
    config = GrafanaConfig.model_validate(
        {"auth": {"bearer": TOKEN, "hmac": {"secret": SECRET, "timestamp_header": "X-Ts"}}}
    )
    assert TOKEN not in repr(config)
    assert SECRET not in repr(config)
    assert SECRET not in json.dumps(config.model_dump(mode="json"))
    assert config.auth is not None
    assert config.auth.hmac is not None
    assert config.auth.hmac.max_skew.total_seconds() == 300


async def test_transport_errors(serve: Serve, recorder: RecordingSubmit) -> None:
    """Wrong content type 415, malformed JSON 400, and a body over max_body 413."""
    client = await serve(max_body=512)
    text = {**BEARER, "Content-Type": "text/plain"}
    assert await post(client, {}, text) == (
        415,
        {"error": "expected Content-Type: application/json, got text/plain"},
    )
    status, answer = await post(client, b'{"version": "1",')
    assert status == 400
    assert answer["error"].startswith("malformed JSON")
    assert await post(client, payload("firing")) == (
        413,
        {"error": "the body is larger than the 512 bytes this input accepts"},
    )
    assert recorder.calls == []


def broken(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    body = payload("firing")
    change(body)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body: expected an object"),
        (broken(lambda b: b.update(version="4")), "version: unsupported version '4'; expected '1'"),
        (broken(lambda b: b.pop("groupKey")), "groupKey: required"),
        (broken(lambda b: b.update(alerts={})), "alerts: expected a list"),
        (
            broken(lambda b: b["alerts"][1].update(labels=[])),
            "alerts[1].labels: expected an object",
        ),
        (
            broken(lambda b: b["alerts"][0].update(values=[1])),
            "alerts[0].values: expected an object",
        ),
        (broken(lambda b: b.update(status="alerting")), "status: expected 'firing' or 'resolved'"),
        (broken(lambda b: b.update(orgId="1")), "orgId: expected an integer"),
        (
            broken(lambda b: (b.pop("groupKey"), b["alerts"][0].pop("status"))),
            "groupKey: required (and 1 more problem)",
        ),
    ],
)
async def test_payload_not_version_1_is_422(
    serve: Serve, recorder: RecordingSubmit, body: Any, message: str
) -> None:
    """JSON that is not a version-1 payload gets a 422 naming the field."""
    client = await serve()
    assert await post(client, body) == (422, {"error": message})
    assert recorder.calls == []


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
# Places in a real payload to spoil, so the property reaches deep into valid-looking bodies.
PATHS: list[tuple[str | int, ...]] = [
    ("version",),
    ("groupKey",),
    ("status",),
    ("alerts",),
    ("alerts", 0),
    ("alerts", 0, "status"),
    ("alerts", 0, "labels"),
    ("alerts", 0, "labels", "instance"),
    ("alerts", 0, "annotations"),
    ("alerts", 0, "annotations", "summary"),
    ("alerts", 0, "values"),
    ("alerts", 0, "fingerprint"),
    ("alerts", 1, "startsAt"),
    ("alerts", 1, "silenceURL"),
    ("truncatedAlerts",),
    ("orgId",),
    ("commonLabels",),
    ("title",),
]


@st.composite
def spoiled_payloads(draw: st.DrawFn) -> dict[str, Any]:
    body = payload(draw(st.sampled_from(["firing", "resolved"])))
    for _ in range(draw(st.integers(1, 3))):
        *parents, last = draw(st.sampled_from(PATHS))
        target: Any = body
        for part in parents:
            try:
                target = target[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(target, dict) and isinstance(last, str):
                if draw(st.booleans()):
                    target.pop(last, None)
                else:
                    target[last] = draw(JSON_VALUES)
            elif isinstance(target, list) and isinstance(last, int) and last < len(target):
                target[last] = draw(JSON_VALUES)
    return body


def mapped(body: Any) -> list[Event] | str:
    """The Events for a parsed body, or the 422 message."""
    try:
        return read_payload(body).events(body, "grafana")
    except PayloadError as exc:
        return str(exc)


@given(body=JSON_VALUES | st.dictionaries(st.text(max_size=8), JSON_VALUES) | spoiled_payloads())
def test_mapping_never_raises_anything_else(body: Any) -> None:
    """Any JSON value is Events with text labels and a fingerprint, or a 422 message."""
    result = mapped(body)
    if isinstance(result, str):
        assert result
        return
    assert len(result) == len(body["alerts"])
    for event in result:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.labels.items())
        assert isinstance(event.text, str)
        assert event.fingerprint
        assert event.status in (Status.FIRING, Status.RESOLVED)
        json.dumps(event.to_json())  # storable


CONFIG = """
contacts:
  oncall: "15102110086"
inputs:
  grafana:
    type: grafana
    auth:
      hmac:
        secret: grafana-hmac-secret-5550123
        timestamp_header: X-Grafana-Alerting-Timestamp
rules:
  - name: page
    match: {kind: alert, source: grafana}
    sms:
      to: [oncall]
      template: "{{ status }} {{ labels.alertname }} {{ labels.instance }}: {{ text }}"
"""


async def test_through_a_running_daemon(smsbridge_daemon: DaemonFactory) -> None:
    """A signed Grafana notification to a real daemon becomes SMS at the gateway simulator."""
    daemon = await smsbridge_daemon(CONFIG, types=[GrafanaInput])
    body = encode(payload("firing"))
    headers = signed(body, str(int(time.time())))
    assert await post_json(daemon, "/hooks/grafana", body, headers) == (
        200,
        {"accepted": 2, "duplicate": False, "rejected": []},
    )
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 2)
    assert sorted(m.content for m in daemon.simulator.state.messages) == [
        "firing HighMemory db1:9100: Memory on db1 is 93% used",
        "firing HighMemory db2:9100: db2 has used 91% of its memory for 5 minutes.",
    ]
    # Grafana's retry of the same delivery is acknowledged and sends nothing more.
    assert (await post_json(daemon, "/hooks/grafana", body, headers))[1]["duplicate"] is True
    unsigned = await post_json(daemon, "/hooks/grafana", body)
    assert unsigned[0] == 401
