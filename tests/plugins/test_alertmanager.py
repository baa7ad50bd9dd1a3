"""The alertmanager input: v4 payloads in, Events and honest answer codes out."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from bridge.events import EventKind, Status
from bridge.plugins.alertmanager import AlertmanagerConfig, AlertmanagerInput
from bridge.plugins.alertmanager.payload import Payload
from bridge.testing import RecordingSubmit, ServeInput

PAYLOADS = Path(__file__).parent / "payloads"
TOKEN = "am-token-0123456789"
PASSWORD = "am-password-9876543210"
JSON = {"Content-Type": "application/json"}
BEARER = {**JSON, "Authorization": f"Bearer {TOKEN}"}


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"alertmanager_{name}.json").read_bytes())
    return data


Serve = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def serve(serve_input: ServeInput) -> Serve:
    """Mount an alertmanager input at /hooks/am in a real aiohttp app and return a client."""

    async def start(**config: Any) -> TestClient[web.Request, web.Application]:
        config.setdefault("auth", {"bearer": TOKEN})
        return await serve_input(AlertmanagerInput, "am", config)

    return start


async def post(
    client: TestClient[web.Request, web.Application],
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(
        "/hooks/am", data=data, headers=BEARER if headers is None else headers
    ) as r:
        return r.status, await r.json()


async def test_firing_payload_makes_one_event_per_alert(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Each alert becomes an Event with its own labels, status, fingerprint, text and data."""
    client = await serve()
    body = payload("firing")
    assert await post(client, body) == (200, {"accepted": 3, "duplicate": False, "rejected": []})
    first, second, third = recorder.events
    assert all(e.kind is EventKind.ALERT and e.source == "am" for e in recorder.events)
    assert first.labels == body["alerts"][0]["labels"]
    assert [e.status for e in recorder.events] == [Status.FIRING, Status.FIRING, Status.RESOLVED]
    assert [e.fingerprint for e in recorder.events] == [
        "c6eadffa33fcdf37",
        "0f3b2a6d9e1c4b57",
        "9a1d5e7c3b2f8e40",
    ]
    assert first.text == "Disk /var on db1 is 97% full"
    assert second.text == "Only 800 MiB left on /."  # no summary: the description
    assert third.data["alert"] == body["alerts"][2]  # unknown fields (silencedBy) kept
    assert third.data["annotations"] == {"summary": "Disk /srv on web1 is 96% full"}
    assert first.data["group"] == {
        "groupKey": '{}/{severity="page"}:{alertname="DiskFull"}',
        "status": "firing",
        "receiver": "sms\\.oncall",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", "severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://am.example:9093",
        "truncatedAlerts": 0,
    }
    assert recorder.calls[-1][2] == 4 * 3600.0


async def test_resolved_payload_resolves_every_alert(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """A resolved group gives resolved Events with the fingerprints of the firing ones."""
    client = await serve()
    assert (await post(client, payload("resolved")))[0] == 200
    assert [(e.status, e.fingerprint) for e in recorder.events] == [
        (Status.RESOLVED, "c6eadffa33fcdf37"),
        (Status.RESOLVED, "0f3b2a6d9e1c4b57"),
    ]


async def test_truncated_group_is_taken_and_logged(serve: Serve, recorder: RecordingSubmit) -> None:
    """Alerts cut by max_alerts are reported in the data and a warning; the rest go through."""
    client = await serve()
    with capture_logs() as logs:
        assert (await post(client, payload("truncated")))[0] == 200
    assert len(recorder.events) == 2
    assert recorder.events[0].data["group"]["truncatedAlerts"] == 5
    assert {"event": "alerts_truncated", "dropped": 5}.items() <= logs[0].items()


async def test_missing_fingerprint_is_a_stable_hash_of_labels(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Without a fingerprint the same label set, in any order, gets the same 16-hex stand-in."""
    client = await serve()
    body = payload("firing")
    del body["alerts"][0]["fingerprint"]
    await post(client, body)
    made = recorder.events[0].fingerprint
    body["alerts"][0]["labels"] = dict(reversed(body["alerts"][0]["labels"].items()))
    await post(client, body)
    assert recorder.events[0].fingerprint == made
    assert len(made) == 16
    assert made != "c6eadffa33fcdf37"


def key(body: dict[str, Any], source: str = "am") -> str:
    return Payload.model_validate(body).parse(source)[1]


async def test_repeated_delivery_has_the_same_dedupe_key(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """A retry or an HA peer's copy (alerts in another order) carries the same key."""
    client = await serve()
    body = payload("firing")
    await post(client, body)
    first = recorder.key
    body["alerts"].reverse()
    await post(client, body)
    assert recorder.key == first == key(payload("firing"))
    assert len(first) == 64  # a sha256 hex digest


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(status="resolved"),
        lambda b: b["alerts"][0].update(status="resolved"),
        lambda b: b["alerts"][1].update(fingerprint="ffffffffffffffff"),
        lambda b: b["alerts"][0].update(startsAt="2024-05-01T11:00:00Z"),
        lambda b: b["alerts"].pop(),
        lambda b: b.update(groupKey='{}:{alertname="DiskFull"}'),
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
    assert key(payload("firing"), "am") != key(payload("firing"), "am2")


async def test_duplicate_is_answered_200(serve: Serve, recorder: RecordingSubmit) -> None:
    """A delivery the core has seen is acknowledged, so Alertmanager stops retrying."""
    recorder.duplicate = True
    client = await serve()
    assert await post(client, payload("resolved")) == (
        200,
        {"accepted": 2, "duplicate": True, "rejected": []},
    )


async def test_store_unavailable_is_503(serve: Serve, recorder: RecordingSubmit) -> None:
    """When submit cannot store, the answer is 503 (retried), never 2xx."""
    recorder.fail = True
    client = await serve()
    assert await post(client, payload("firing")) == (
        503,
        {"error": "the events could not be stored; try again later"},
    )


async def test_dedupe_window_comes_from_config(serve: Serve, recorder: RecordingSubmit) -> None:
    """The configured window is handed to submit in seconds."""
    client = await serve(dedupe_window="90m")
    await post(client, payload("firing"))
    assert recorder.calls[-1][2] == 5400.0


async def test_bearer_auth(serve: Serve, recorder: RecordingSubmit) -> None:
    """No token is 401 with a challenge, a wrong one 403, and neither is logged or echoed."""
    client = await serve()
    texts: list[str] = []
    with capture_logs() as logs:
        async with client.post("/hooks/am", json=payload("firing")) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="smsbridge"'
            texts.append(await r.text())
        for auth in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer  " + TOKEN + "0"):
            status, answer = await post(client, payload("firing"), {**JSON, "Authorization": auth})
            assert (status, answer) == (403, {"error": "the credentials were not accepted"})
            texts.append(json.dumps(answer))
        basic = "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode()
        status, answer = await post(client, payload("firing"), {**JSON, "Authorization": basic})
        assert status == 401
    assert recorder.calls == []
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == ["auth_failed"] * 5
    assert TOKEN not in repr(logs) + "".join(texts)
    assert (await post(client, payload("firing")))[0] == 200


async def test_basic_auth(serve: Serve, recorder: RecordingSubmit) -> None:
    """Basic credentials are checked in full; a malformed header is 401, a wrong one 403."""
    client = await serve(auth={"basic": {"username": "am", "password": PASSWORD}})

    def basic(user: str, password: str) -> dict[str, str]:
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {**JSON, "Authorization": f"Basic {encoded}"}

    with capture_logs() as logs:
        assert (await post(client, payload("firing"), basic("am", PASSWORD)))[0] == 200
        assert (await post(client, payload("firing"), basic("am", "nope")))[0] == 403
        assert (await post(client, payload("firing"), basic("root", PASSWORD)))[0] == 403
        malformed = {**JSON, "Authorization": "Basic not-base64!"}
        assert (await post(client, payload("firing"), malformed))[0] == 401
        async with client.post("/hooks/am", json=payload("firing")) as r:
            assert (r.status, r.headers["WWW-Authenticate"]) == (401, 'Basic realm="smsbridge"')
    assert len(recorder.calls) == 1
    assert PASSWORD not in repr(logs)


async def test_unauthenticated_when_allowed(serve: Serve, recorder: RecordingSubmit) -> None:
    """With the explicit opt-out, a request without credentials is taken."""
    client = await serve(auth=None, allow_unauthenticated=True)
    assert (await post(client, payload("firing"), JSON))[0] == 200


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "auth is required"),
        ({"auth": {"bearer": "t"}, "allow_unauthenticated": True}, "not both"),
        ({"auth": {}}, "set exactly one of bearer"),
        ({"auth": {"bearer": "t", "basic": {"username": "u", "password": "p"}}}, "exactly one"),
        ({"auth": {"bearer": ""}}, "bearer must not be empty"),
        ({"auth": {"bearer": "t"}, "token": "t"}, "Extra inputs are not permitted"),
    ],
)
def test_config_requires_auth_or_an_explicit_opt_out(config: dict[str, Any], message: str) -> None:
    """Leaving auth out is a config error unless allow_unauthenticated says so."""
    with pytest.raises(ValidationError, match=message):
        AlertmanagerConfig.model_validate(config)


def test_config_defaults() -> None:
    """Bearer auth alone is enough; the window defaults to Alertmanager's repeat_interval."""
    config = AlertmanagerConfig.model_validate({"auth": {"bearer": SecretStr(TOKEN)}})
    assert (config.dedupe_window.total_seconds(), config.max_body) == (4 * 3600, 1024 * 1024)
    assert TOKEN not in repr(config)


async def test_wrong_content_type_is_415(serve: Serve) -> None:
    """A body that is not application/json is refused before it is read."""
    client = await serve()
    headers = {**BEARER, "Content-Type": "text/plain"}
    assert await post(client, payload("firing"), headers) == (
        415,
        {"error": "expected Content-Type: application/json, got text/plain"},
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"version": "4",', "malformed JSON: Expecting property name enclosed in double quotes"),
        (b"", "malformed JSON: Expecting value at line 1 column 1"),
        (b'{"a": NaN}', "malformed JSON: NaN is not JSON"),
        (b'\xff{"a": 1}', "malformed JSON: the body is not UTF-8 text"),
    ],
)
async def test_malformed_json_is_400(serve: Serve, body: bytes, message: str) -> None:
    """Bodies that are not JSON get a 400 naming the problem."""
    client = await serve()
    status, answer = await post(client, body)
    assert status == 400
    assert answer["error"].startswith(message)


def broken(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    body = payload("firing")
    change(body)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body: expected an object"),
        (broken(lambda b: b.pop("alerts")), "alerts: required"),
        (broken(lambda b: b.update(alerts={})), "alerts: expected a list"),
        (broken(lambda b: b.update(version="5")), "version: unsupported version '5'; expected '4'"),
        (broken(lambda b: b.update(version=4)), "version: expected a string"),
        (broken(lambda b: b.update(status="pending")), "status: expected 'firing' or 'resolved'"),
        (
            broken(lambda b: b.update(truncatedAlerts=-1)),
            "truncatedAlerts: expected a number of at least 0",
        ),
        (
            broken(lambda b: (b.pop("groupKey"), b["alerts"][0].pop("status"))),
            "groupKey: required",
        ),
    ],
)
async def test_payload_not_v4_is_422(
    serve: Serve, recorder: RecordingSubmit, body: Any, message: str
) -> None:
    """A payload that is JSON but not version 4 gets a 422 naming the field."""
    client = await serve()
    assert await post(client, body) == (422, {"error": message})
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("change", "index", "message"),
    [
        (lambda b: b["alerts"][1].update(labels=[]), 1, "alerts[1].labels: expected an object"),
        (
            lambda b: b["alerts"][0]["labels"].update(severity=1),
            0,
            "alerts[0].labels.severity: expected a string",
        ),
        (
            lambda b: b["alerts"][2]["annotations"].update({"runbook url": None}),
            2,
            'alerts[2].annotations["runbook url"]: expected a string',
        ),
        (lambda b: b["alerts"].__setitem__(1, "x"), 1, "alerts[1]: expected an object"),
    ],
)
async def test_a_bad_alert_is_listed_and_the_others_accepted(
    serve: Serve,
    recorder: RecordingSubmit,
    change: Callable[[dict[str, Any]], Any],
    index: int,
    message: str,
) -> None:
    """One unusable alert never costs the group: Alertmanager does not retry a 4xx."""
    client = await serve()
    assert await post(client, broken(change)) == (
        200,
        {"accepted": 2, "duplicate": False, "rejected": [{"index": index, "error": message}]},
    )
    assert len(recorder.events) == 2


async def test_a_group_of_only_bad_alerts_is_422(serve: Serve, recorder: RecordingSubmit) -> None:
    """Nothing usable in the request: the sender is told, nothing is stored."""
    client = await serve()
    body = payload("firing")
    for alert in body["alerts"]:
        alert["labels"] = None
    status, answer = await post(client, body)
    assert (status, answer["error"]) == (422, "item 0: alerts[0].labels: expected an object")
    assert recorder.calls == []


async def test_a_lone_surrogate_becomes_a_replacement_character(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Valid JSON that is not valid text (a lone surrogate) is coerced, never a 5xx."""
    client = await serve()
    data = json.dumps(payload("firing")).replace("db1", "db\\ud800", 1).encode()
    assert b"\\ud800" in data
    status, _ = await post(client, data)
    assert status == 200
    assert any("db\ufffd" in event.labels.get("instance", "") for event in recorder.events)
    json.dumps(recorder.events[0].to_json()).encode("utf-8")  # encodable from here on


async def test_body_over_max_body_is_413(serve: Serve, recorder: RecordingSubmit) -> None:
    """A declared or streamed body longer than max_body is refused with 413."""
    client = await serve(max_body=512)
    data = json.dumps(payload("firing")).encode()
    too_big = {"error": "the body is larger than the 512 bytes this input accepts"}
    assert await post(client, data) == (413, too_big)

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check first
        for start in range(0, len(data), 100):
            yield data[start : start + 100]

    async with client.post("/hooks/am", data=chunks(), headers=BEARER) as r:
        assert (r.status, await r.json()) == (413, too_big)
    assert recorder.calls == []


async def test_fields_alertmanager_may_add_are_accepted(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Unknown keys at any level are ignored by validation and kept in the data."""
    client = await serve()
    body = payload("resolved")
    body["newField"] = {"x": 1}
    body["alerts"][0]["status_reason"] = "inhibited"
    assert (await post(client, body))[0] == 200
    assert recorder.events[0].data["alert"]["status_reason"] == "inhibited"
