"""The webhook input: arbitrary JSON mapped to Events by dotted paths, behind token or HMAC auth."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from bridge.events import Event, EventKind, Status
from bridge.plugin.base import StoreUnavailableError
from bridge.plugins.webhook import FieldsConfig, WebhookConfig, WebhookInput
from bridge.plugins.webhook.mapping import MappingError, map_body
from bridge.testing import RecordingSubmit, ServeInput

TOKEN = "hook-token-0123456789"
SECRET = "hook-hmac-secret-9876543210"
JSON = {"Content-Type": "application/json"}
BEARER = {**JSON, "Authorization": f"Bearer {TOKEN}"}
ALERT = {"labels": {"host": "db1", "check": "disk"}, "message": "disk full", "status": "firing"}


Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def serve(serve_input: ServeInput) -> Serve:
    """Mount a webhook input at /hooks/hook in a real aiohttp app and return a client."""

    async def start(**config: Any) -> Client:
        config.setdefault("auth", {"token": TOKEN})
        return await serve_input(WebhookInput, "hook", config)

    return start


async def post(client: Client, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(
        "/hooks/hook", data=data, headers=BEARER if headers is None else headers
    ) as r:
        return r.status, await r.json()


def signed(
    body: bytes, secret: str = SECRET, algorithm: str = "sha256", prefix: str = "sha256="
) -> str:
    return prefix + hmac.new(secret.encode(), body, algorithm).hexdigest()


async def test_an_object_is_one_event(serve: Serve, recorder: RecordingSubmit) -> None:
    """The default paths read labels, message and status; the fingerprint hashes labels and text."""
    client = await serve()
    assert await post(client, ALERT) == (200, {"accepted": 1, "duplicate": False, "rejected": []})
    (event,) = recorder.events
    assert (event.kind, event.source, event.status) == (EventKind.ALERT, "hook", Status.FIRING)
    assert (event.labels, event.text, event.data) == (ALERT["labels"], "disk full", ALERT)
    assert len(event.fingerprint) == 16
    await post(client, {**ALERT, "status": "resolved", "labels": {"check": "disk", "host": "db1"}})
    assert recorder.events[0].fingerprint == event.fingerprint


async def test_a_list_is_one_event_per_object(serve: Serve, recorder: RecordingSubmit) -> None:
    """A list of objects is several events in one submit."""
    client = await serve()
    body = [ALERT, {"message": "cpu hot"}, {"labels": {"x": 1, "y": None, "z": True}}]
    assert (await post(client, body))[1]["accepted"] == 3
    second, third = recorder.events[1:]
    assert (second.labels, second.text, second.status) == ({}, "cpu hot", Status.FIRING)
    assert (third.labels, third.text) == ({"x": "1", "z": "true"}, "")


async def test_dotted_paths_and_extra_labels(serve: Serve, recorder: RecordingSubmit) -> None:
    """Configured paths reach into nested objects and lists; extra labels join the labels."""
    client = await serve(
        kind="command",
        fields={
            "labels": "event.tags",
            "text": "event.title",
            "status": "event.state",
            "fingerprint": "event.id",
            "extra_labels": {"host": "host.name", "first_ip": "host.ips.0", "gone": "host.nope"},
        },
    )
    body = {
        "event": {"tags": {"team": "db"}, "title": "backup late", "state": "OK", "id": 42},
        "host": {"name": "db1", "ips": ["10.0.0.5", "10.0.0.6"]},
    }
    assert (await post(client, body))[0] == 200
    (event,) = recorder.events
    assert event.kind is EventKind.COMMAND
    assert event.labels == {"team": "db", "host": "db1", "first_ip": "10.0.0.5"}
    assert (event.text, event.status, event.fingerprint) == ("backup late", Status.RESOLVED, "42")


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("firing", Status.FIRING),
        ("Alerting", Status.FIRING),
        ("PROBLEM", Status.FIRING),
        ("resolved", Status.RESOLVED),
        ("ok", Status.RESOLVED),
        (" Normal ", Status.RESOLVED),
        (None, Status.FIRING),
    ],
)
async def test_status_words(
    serve: Serve, recorder: RecordingSubmit, word: str | None, status: Status
) -> None:
    """Common status words map to firing or resolved, ignoring case; none means firing."""
    client = await serve()
    await post(client, {**ALERT, "status": word})
    assert recorder.events[0].status is status


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"status": "pending"},
            "status: expected firing or resolved (or alerting, problem, ok, normal), got 'pending'",
        ),
        (
            {"status": 1},
            "status: expected firing or resolved (or alerting, problem, ok, normal), got a number",
        ),
        ({"labels": "db1"}, "labels: expected an object, got a string"),
        ([ALERT, {"labels": []}], "[1].labels: expected an object, got a list"),
        ([ALERT, 3], "[1]: expected an object, got a number"),
        ("hello", "the body: expected an object or a list of objects, got a string"),
    ],
)
async def test_unmappable_documents_are_422(
    serve: Serve, recorder: RecordingSubmit, body: Any, message: str
) -> None:
    """A document the paths cannot make into an Event gets a 422 naming the field."""
    client = await serve()
    assert await post(client, body) == (422, {"error": message})
    assert recorder.calls == []


async def test_token_auth(serve: Serve, recorder: RecordingSubmit) -> None:
    """Bearer in Authorization or the raw token in a custom header; never logged or echoed."""
    client = await serve(auth={"token": TOKEN})
    custom = await serve(auth={"token": TOKEN, "header": "X-Token"})
    texts = []
    with capture_logs() as logs:
        async with client.post("/hooks/hook", json=ALERT) as r:
            assert (r.status, r.headers["WWW-Authenticate"]) == (401, 'Bearer realm="smsbridge"')
            texts.append(await r.text())
        status, answer = await post(client, ALERT, {**JSON, "Authorization": f"Bearer {TOKEN}1"})
        assert (status, answer) == (403, {"error": "the token was not accepted"})
        assert (await post(custom, ALERT, {**JSON, "X-Token": TOKEN}))[0] == 200
        assert (await post(custom, ALERT, {**JSON, "X-Token": TOKEN[:-1]}))[0] == 403
        status, answer = await post(custom, ALERT, JSON)
        assert (status, answer) == (
            401,
            {"error": "authentication required: send the token in X-Token"},
        )
        texts.append(json.dumps(answer))
    assert len(recorder.calls) == 1
    assert [log["event"] for log in logs if log["event"] == "auth_failed"] == ["auth_failed"] * 4
    assert TOKEN not in repr(logs) + "".join(texts)
    assert (await post(client, ALERT))[0] == 200


@pytest.mark.parametrize(
    ("hmac_config", "algorithm", "prefix"),
    [
        ({}, "sha256", "sha256="),
        ({"algorithm": "sha1"}, "sha1", "sha1="),
        ({"algorithm": "sha512", "prefix": "", "header": "X-Hub-Sig"}, "sha512", ""),
    ],
)
async def test_hmac_auth(
    serve: Serve,
    recorder: RecordingSubmit,
    hmac_config: dict[str, str],
    algorithm: str,
    prefix: str,
) -> None:
    """The signature of the raw body is checked before parsing; wrong is 403, missing 401."""
    client = await serve(auth={"hmac": {"secret": SECRET, **hmac_config}})
    header = hmac_config.get("header", "X-Signature")
    body = json.dumps(ALERT).encode()
    good = signed(body, algorithm=algorithm, prefix=prefix)
    with capture_logs() as logs:
        assert (await post(client, body, {**JSON, header: good}))[0] == 200
        assert (await post(client, body, {**JSON, header: good.upper()}))[0] == 200
        status, answer = await post(client, body + b" ", {**JSON, header: good})
        assert (status, answer) == (403, {"error": "the signature does not match the body"})
        wrong_key = signed(body, "other", algorithm, prefix)
        assert (await post(client, body, {**JSON, header: wrong_key}))[0] == 403
        assert (await post(client, b"{not json", {**JSON, header: good}))[0] == 403
        async with client.post("/hooks/hook", data=body, headers=JSON) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == f'HMAC realm="smsbridge", header="{header}"'
    assert len(recorder.calls) == 2
    assert SECRET not in repr(logs)


async def test_dedupe_key_is_the_body_hash(serve: Serve, recorder: RecordingSubmit) -> None:
    """The same bytes give the same key and the configured window; other bytes another key."""
    client = await serve(dedupe_window="10m")
    body = json.dumps(ALERT).encode()
    await post(client, body)
    await post(client, body)
    await post(client, json.dumps({**ALERT, "status": "ok"}).encode())
    (_, first, window), (_, again, _), (_, other, _) = recorder.calls
    assert first == again != other
    assert window == 600.0


async def test_dedupe_is_off_by_default(serve: Serve, recorder: RecordingSubmit) -> None:
    """Without a window every delivery is taken (window 0 is handed to submit)."""
    client = await serve()
    await post(client, ALERT)
    assert recorder.calls[0][2] == 0.0


async def test_duplicate_and_store_answers(serve: Serve, recorder: RecordingSubmit) -> None:
    """A duplicate is 200 with duplicate true; a store failure is 503; other errors are 500."""
    client = await serve()
    recorder.duplicate = True
    assert (await post(client, ALERT))[1]["duplicate"] is True
    recorder.error = StoreUnavailableError("disk full")
    assert await post(client, ALERT) == (
        503,
        {"error": "the events could not be stored; try again later"},
    )
    recorder.error = RuntimeError("a bug")
    async with client.post("/hooks/hook", json=ALERT, headers=BEARER) as r:
        assert r.status == 500


async def test_transport_errors(serve: Serve, recorder: RecordingSubmit) -> None:
    """Wrong content type is 415, broken JSON 400, a body over max_body 413."""
    client = await serve(max_body=64)
    headers = {**BEARER, "Content-Type": "application/x-www-form-urlencoded"}
    assert await post(client, ALERT, headers) == (
        415,
        {"error": "expected Content-Type: application/json, got application/x-www-form-urlencoded"},
    )
    assert await post(client, b'{"a":') == (
        400,
        {"error": "malformed JSON: Expecting value at line 1 column 6"},
    )
    assert await post(client, {"message": "x" * 100}) == (
        413,
        {"error": "the body is larger than the 64 bytes this input accepts"},
    )
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "auth is required"),
        ({"auth": {"token": "t"}, "allow_unauthenticated": True}, "not both"),
        ({"auth": {"token": "t", "hmac": {"secret": "s"}}}, "exactly one"),
        ({"auth": {"hmac": {"secret": "s"}, "header": "X-Sig"}}, "header belongs to token"),
        ({"auth": {"hmac": {"secret": ""}}}, "secret must not be empty"),
        ({"auth": {"hmac": {"secret": "s", "algorithm": "md5"}}}, "literal_error|Input should be"),
        ({"allow_unauthenticated": True, "fields": {"text": "a..b"}}, "dotted path"),
        ({"allow_unauthenticated": True, "fields": {"extra_labels": {"h": ""}}}, "dotted path"),
        ({"allow_unauthenticated": True, "kind": "page"}, "Input should be"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    """Auth must be set (or openness asked for), once, and paths must be dotted paths."""
    with pytest.raises(ValidationError, match=message):
        WebhookConfig.model_validate(config)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(["labels", "message", "status", "id", "a", "0", "1", "host"]) | st.text(
    "abc0", min_size=1, max_size=3
)
PATHS = st.lists(KEYS, min_size=1, max_size=3).map(".".join)
FIELDS = st.builds(
    FieldsConfig,
    labels=PATHS,
    text=PATHS,
    status=PATHS,
    fingerprint=st.none() | PATHS,
    extra_labels=st.dictionaries(st.text(min_size=1, max_size=4), PATHS, max_size=3),
)


def mapped(body: Any, fields: FieldsConfig) -> list[Event] | str:
    """The Events for a document, or the 422 message when it cannot be mapped."""
    try:
        return map_body(body, fields, kind=EventKind.ALERT, source="hook")
    except MappingError as exc:
        return str(exc)


@given(body=JSON_VALUES, fields=FIELDS)
def test_mapping_never_raises_anything_else(body: Any, fields: FieldsConfig) -> None:
    """Any JSON document under any paths is Events with text labels, or a MappingError."""
    result = mapped(body, fields)
    if isinstance(result, str):
        assert result
        return
    for event in result:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.labels.items())
        assert isinstance(event.text, str)
        assert event.fingerprint
        assert isinstance(event.status, Status)


@given(body=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=6))
def test_objects_with_default_paths_map_unless_labels_or_status_are_wrong(
    body: dict[str, Any],
) -> None:
    """With default paths an object is refused only for non-object labels or an unknown status."""
    labels_ok = body.get("labels") is None or isinstance(body.get("labels"), dict)
    status = body.get("status")
    status_ok = status is None or (
        isinstance(status, str)
        and status.strip().lower() in {"firing", "alerting", "problem", "resolved", "ok", "normal"}
    )
    refused = isinstance(mapped(body, FieldsConfig()), str)
    assert refused is not (labels_ok and status_ok)
