"""Properties of client and simulator together: texts round-trip exactly, the key never leaks."""

from __future__ import annotations

import io
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge.logging import configure_logging
from bridge.plugins.c123 import errors
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config, TimeoutConfig
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    Fault,
    FaultKind,
    MalformedVariant,
    SimAccount,
    Simulator,
    SimulatorSettings,
)
from bridge.testing import LoopThread

T = TypeVar("T")
CANARY = "LEAKCANARY0123456789ABCDEFGHIJKL"
ACCOUNT = "7@7007"
A, B = "15102110086", "15102110087"


class Rig:
    def __init__(self, key: str = CANARY) -> None:
        self.simulator = Simulator(
            SimulatorSettings(
                accounts=(SimAccount(ac=ACCOUNT, authkey=key),), report_delay=0, rate_limit=None
            )
        )
        self.key = key

    async def start(self) -> None:
        await self.simulator.start()
        self.session = aiohttp.ClientSession()
        self.client = self.make_client(self.key)

    def make_client(self, key: str, total: float = 2.0) -> C123Client:
        config = C123Config(
            rate_limit=None,
            base_url=self.simulator.url,
            account=ACCOUNT,
            authkey=SecretStr(key),
            timeout=TimeoutConfig(connect=1, total=total),
        )
        return C123Client(config, self.session)

    async def stop(self) -> None:
        await self.session.close()
        await self.simulator.stop()


@pytest.fixture(scope="module")
def rig(module_loop_thread: LoopThread) -> Iterator[tuple[LoopThread, Rig]]:
    rig = Rig()
    module_loop_thread.run(rig.start)
    yield module_loop_thread, rig
    module_loop_thread.run(rig.stop)


any_text = st.text(min_size=1, max_size=300)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=any_text)
def test_any_text_round_trips_or_is_refused_by_name(rig: tuple[LoopThread, Rig], text: str) -> None:
    """Any Unicode text is either refused naming `content`, or arrives byte-exact at the gateway."""
    thread, r = rig

    async def send() -> str:
        await r.client.send_once([A], text)
        return r.simulator.state.messages[-1].content

    try:
        arrived = thread.run(send)
    except errors.InvalidRequestError as exc:
        refused = exc.field
    else:
        assert arrived.encode() == text.encode()
        return
    assert refused == "content"


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(any_text.filter(lambda t: "{|}" not in t), min_size=2, max_size=5))
def test_batch_texts_round_trip(rig: tuple[LoopThread, Rig], texts: list[str]) -> None:
    """Per-number texts of a batch each arrive exactly at their own number."""
    thread, r = rig
    numbers = [f"1390000{i:04d}" for i in range(len(texts))]

    async def send() -> dict[str, str]:
        before = len(r.simulator.state.messages)
        await r.client.send_batch(list(zip(numbers, texts, strict=True)))
        return {m.mobile: m.content for m in r.simulator.state.messages[before:]}

    try:
        arrived = thread.run(send)
    except errors.InvalidRequestError as exc:
        refused = exc.field
    else:
        assert arrived == dict(zip(numbers, texts, strict=True))
        return
    assert refused.startswith("contents[")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=any_text)
def test_reply_text_round_trips(rig: tuple[LoopThread, Rig], text: str) -> None:
    """Any reply text XML can carry comes back from getReply byte-exact."""
    thread, r = rig
    from bridge.plugins.c123.validation import check_content

    try:
        check_content(text)
    except errors.InvalidRequestError:
        return  # the gateway could never hand such a text back

    async def fetch() -> list[str]:
        r.simulator.state.inject_reply(A, text)
        return [reply.content for reply in await r.client.get_reply()]

    assert thread.run(fetch) == [text]


FAULTS = [
    Fault(FaultKind.DROP),
    Fault(FaultKind.HTTP500),
    Fault(FaultKind.MALFORMED, variant=MalformedVariant.HTML),
    Fault(FaultKind.MALFORMED, variant=MalformedVariant.WRONG_ROOT),
    Fault(FaultKind.DELAY, seconds=2),
    Fault(FaultKind.ACCEPT_THEN_DROP),
    *(Fault(FaultKind.CODE, code=code) for code in (0, -1, -3, -4, -9, -10, -11, -42)),
]


async def _every_failure(r: Rig, spare: Path) -> list[BaseException]:
    """Make each action fail in each way the gateway can, collecting the errors."""
    caught: list[BaseException] = []
    calls: list[Callable[[C123Client], Awaitable[Any]]] = [
        lambda c: c.send_once([A], "hello"),
        lambda c: c.send_batch([(A, "a"), (B, "b")]),
        lambda c: c.send_param("{p1}", [A, B], {"p1": ["x", "y"]}),
        lambda c: c.get_send_state(),
        lambda c: c.get_reply(),
        lambda c: c.get_balance(),
    ]
    for call in calls:
        for fault in FAULTS:
            # A fresh client for each fault, its key proven first: an account fault (-3)
            # pauses the client that got it, which then makes no further call.
            fast = r.make_client(CANARY, total=0.5)
            await fast.get_balance()
            r.simulator.state.add_fault(
                Fault(fault.kind, seconds=fault.seconds, code=fault.code, variant=fault.variant)
            )
            try:
                await call(fast)
            except errors.C123Error as exc:
                caught.append(exc)
            r.simulator.state.clear_faults()
    for bad in (lambda c: c.send_once(["nope"], "x"), lambda c: c.send_once([A], "")):
        try:
            await bad(r.client)
        except errors.C123Error as exc:
            caught.append(exc)
    wrong = r.make_client("WRONGKEY" + CANARY[8:])
    try:
        await wrong.get_balance()
    except errors.C123Error as exc:
        caught.append(exc)
    try:
        await r.client.request(Action.GET_BALANCE)
        r.simulator.state.add_fault(Fault(FaultKind.CODE, code=-2, action=Action.UPDATE_KEY))
        await r.client.update_key(spare / "never-written.key")
    except errors.C123Error as exc:
        caught.append(exc)
    return caught


def test_key_never_appears_in_errors_logs_or_reprs(
    rig: tuple[LoopThread, Rig], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With every call failing every way, no error, repr, traceback or log line holds the key."""
    thread, r = rig
    stream = io.StringIO()
    configure_logging(stream, json=True, level="debug")
    try:
        caught = thread.run(lambda: _every_failure(r, tmp_path))
        thread.run(lambda: _log_through_stdlib(caught))
    finally:
        configure_logging(io.StringIO(), json=True)
    assert "gateway_call_failed" in stream.getvalue()
    assert "Traceback" in stream.getvalue()
    texts = [stream.getvalue(), repr(r.client), repr(r.client.config), str(r.client.config)]
    for exc in caught:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    out = capsys.readouterr()
    texts += [out.out, out.err]
    assert len(caught) >= 6 * len(FAULTS), "every call should have failed"
    assert {type(exc).__name__ for exc in caught} >= {
        "ConnectionDroppedError",
        "HttpStatusError",
        "MalformedResponseError",
        "ResponseTimeoutError",
        "WrongKeyError",
        "InvalidRequestError",
        "UnknownResultCodeError",
    }
    leaked = [text for text in texts if CANARY in text or CANARY[10:] in text]
    assert leaked == []


async def _log_through_stdlib(caught: list[BaseException]) -> None:
    log = structlog.get_logger("leak-check")
    for exc in caught[:20]:
        try:
            raise exc
        except errors.C123Error:
            log.exception("call_failed")
