"""The c123 client against the simulator on a loopback port: every action, every result code."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
import structlog.testing
from pydantic import SecretStr

from bridge.plugins.c123 import errors
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config, TimeoutConfig
from bridge.plugins.c123.keyfile import KeyNotSavedError
from bridge.plugins.c123.models import Action, DeliveryStatus
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    GatewayState,
    MalformedVariant,
    Simulator,
    SimulatorSettings,
)

A, B, C = "15102110086", "15102110087", "15102110088"


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(report_delay=0, rate_limit=None)) as sim:
        yield sim


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def make_config(url: str, **overrides: object) -> C123Config:
    values: dict[str, object] = {
        "base_url": url,
        "account": DEFAULT_ACCOUNT,
        "authkey": SecretStr(DEFAULT_AUTHKEY),
        "timeout": TimeoutConfig(connect=2, total=2),
        "rate_limit": None,  # the simulator's own limit is what test_rate_limit exercises
    }
    values.update(overrides)
    return C123Config.model_validate(values)


@pytest.fixture
def client(simulator: Simulator, session: aiohttp.ClientSession) -> C123Client:
    return C123Client(make_config(simulator.url), session)


def state(sim: Simulator) -> GatewayState:
    return sim.state


async def test_send_once_reaches_the_gateway(client: C123Client, simulator: Simulator) -> None:
    """sendOnce to two numbers records both with the exact text and bills both."""
    result = await client.send_once(["+86" + A, B], "磁盘满了 disk full")
    assert result.action is Action.SEND_ONCE
    assert result.numbers == (A, B)
    assert [(m.mobile, m.content) for m in state(simulator).messages] == [
        (A, "磁盘满了 disk full"),
        (B, "磁盘满了 disk full"),
    ]
    assert result.segments == 2
    assert result.remain == Decimal("99.800")
    assert int(result.items[0].msgid) > 2**53


async def test_send_batch_gives_each_number_its_text(
    client: C123Client, simulator: Simulator
) -> None:
    """sendBatch delivers one text per number, each with its own msgid."""
    result = await client.send_batch([(A, "测试一"), (B, "测试二")])
    contents = {m.mobile: m.content for m in state(simulator).messages}
    assert contents == {A: "测试一", B: "测试二"}
    assert result.msgid_for(A) != result.msgid_for(B)


async def test_send_param_renders_at_the_gateway(client: C123Client, simulator: Simulator) -> None:
    """sendParam fills each number's parameters into the template."""
    await client.send_param(
        "{p1}你好，你在{p2}吗", [A, B], {"p1": ["小明", "小王"], "p2": ["上海", "北京"]}
    )
    contents = [m.content for m in state(simulator).messages]
    assert contents == ["小明你好，你在上海吗", "小王你好，你在北京吗"]


async def test_scheduled_send_carries_gateway_time(
    client: C123Client, simulator: Simulator
) -> None:
    """A scheduled send reaches the gateway with the schedule in its time zone."""
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    await client.send_once([A], "later", at=at)
    (message,) = state(simulator).messages
    assert message.scheduled_for == at


async def test_reports_match_messages_and_are_read_once(
    client: C123Client, simulator: Simulator
) -> None:
    """Delivery reports carry the msgid and number sent to, and come only once."""
    simulator.state.set_carrier_codes({B: "UNDELIV"})
    result = await client.send_batch([(A, "one"), (B, "two")])
    reports = {(r.msgid, r.mobile): r for r in await client.get_send_state()}
    assert reports[(result.msgid_for(A), A)].status is DeliveryStatus.DELIVERED
    assert reports[(result.msgid_for(B), B)].status is DeliveryStatus.FAILED
    assert reports[(result.msgid_for(B), B)].carrier_code == "UNDELIV"
    assert await client.get_send_state() == []


async def test_replies_come_back_once(client: C123Client, simulator: Simulator) -> None:
    """An injected reply is fetched with its number, text and time, then not again."""
    when = datetime(2026, 11, 25, 2, 3, 4, tzinfo=UTC)
    simulator.state.inject_reply(A, "收到，处理中\n— ops", time=when)
    (reply,) = await client.get_reply()
    assert (reply.mobile, reply.content, reply.time) == (A, "收到，处理中\n— ops", when)
    assert await client.get_reply() == []


async def test_balance_follows_spending(client: C123Client) -> None:
    """The balance drops by exactly what a send cost."""
    before = (await client.get_balance()).remain
    result = await client.send_once([A], "x" * 100)
    assert (await client.get_balance()).remain == before - result.cost


async def test_rotate_key_persists_before_use(
    client: C123Client, simulator: Simulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """updateKey stores the new key (mode 0600) and the old key stops working."""
    key_file = tmp_path / "c123.key"
    rotation = await client.update_key(key_file)
    assert key_file.read_text().strip() == rotation.authkey
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert rotation.authkey != DEFAULT_AUTHKEY
    await client.get_balance()  # the client now uses the new key
    stale = C123Client(make_config(simulator.url), session)
    with pytest.raises(errors.WrongKeyError):
        await stale.get_balance()
    from_file = C123Client(make_config(simulator.url, authkey=None, authkey_file=key_file), session)
    await from_file.get_balance()


async def test_rotate_key_refuses_an_unwritable_place(client: C123Client, tmp_path: Path) -> None:
    """If the key file cannot be written, the gateway is never asked (the old key stays)."""
    with pytest.raises(FileNotFoundError, match="missing-dir") as info:
        await client.update_key(tmp_path / "missing-dir" / "c123.key")
    assert not isinstance(info.value, KeyNotSavedError)
    await client.get_balance()


@pytest.mark.parametrize(("code", "cls"), sorted(errors.REFUSALS.items()))
async def test_forced_codes_become_typed_errors(
    client: C123Client, simulator: Simulator, code: int, cls: type[errors.C123Error]
) -> None:
    """Every documented failure code reaches the caller as its own error class."""
    simulator.state.add_fault(Fault(FaultKind.CODE, code=code, action=Action.SEND_ONCE))
    with pytest.raises(cls):
        await client.send_once([A], "hello")
    assert simulator.state.messages == []


async def test_real_refusal_paths(simulator: Simulator, session: aiohttp.ClientSession) -> None:
    """Wrong key, locked key, unknown account, locks, channel group and balance refuse for real."""
    url = simulator.url

    def good() -> C123Client:  # a fresh client each time: an account fault pauses a client
        return C123Client(make_config(url), session)

    wrong = C123Client(make_config(url, authkey=SecretStr("0" * 32)), session)
    with pytest.raises(errors.WrongKeyError):
        await wrong.get_balance()
    simulator.state.set_flags(DEFAULT_ACCOUNT, key_locked=True)
    with pytest.raises(errors.KeyLockedError):
        await good().get_balance()
    simulator.state.set_flags(DEFAULT_ACCOUNT, key_locked=False, account_locked=True)
    with pytest.raises(errors.AccountLockedError):
        await good().get_balance()
    simulator.state.set_flags(DEFAULT_ACCOUNT, account_locked=False, api_disabled=True)
    with pytest.raises(errors.ApiDisabledError):
        await good().send_once([A], "x")
    simulator.state.set_flags(DEFAULT_ACCOUNT, api_disabled=False)
    with pytest.raises(errors.NoSuchAccountError):
        await C123Client(make_config(url, account="9@9"), session).get_balance()
    simulator.state.set_balance(remain=Decimal("0.05"))
    with pytest.raises(errors.InsufficientBalanceError):
        await good().send_once([A], "x")
    assert simulator.state.messages == []


async def test_channel_group_refused(session: aiohttp.ClientSession) -> None:
    """A channel group the account may not use is refused with -8."""
    from bridge.plugins.c123.simulator import SimAccount

    settings = SimulatorSettings(accounts=(SimAccount(channel_groups=frozenset({80})),))
    async with Simulator(settings) as sim:
        allowed = C123Client(make_config(sim.url, channel_group=80), session)
        await allowed.send_once([A], "x")
        with pytest.raises(errors.ChannelGroupError):
            await C123Client(make_config(sim.url, channel_group=81), session).send_once([A], "x")


async def test_bad_parameters_from_the_gateway(client: C123Client) -> None:
    """A request the gateway finds wrong (bypassing validation) is BadParametersError."""
    with pytest.raises(errors.BadParametersError):
        await client.request(Action.SEND_ONCE, {"m": "123", "c": "x"})


async def test_rate_limit_is_minus_one(session: aiohttp.ClientSession) -> None:
    """Bursting past the gateway's rate is refused with a retryable -1."""
    async with Simulator(SimulatorSettings(rate_limit=0.001, rate_burst=2)) as sim:
        client = C123Client(make_config(sim.url), session)
        await client.get_balance()  # the key's proof, then the call: both tokens
        with pytest.raises(errors.RateLimitedError) as info:
            await client.get_balance()
        assert info.value.retryable


@pytest.mark.parametrize(
    ("fault", "cls", "ambiguous"),
    [
        (Fault(FaultKind.DROP), errors.ConnectionDroppedError, True),
        (Fault(FaultKind.HTTP500), errors.HttpStatusError, True),
        (Fault(FaultKind.MALFORMED), errors.MalformedResponseError, True),
        (
            Fault(FaultKind.MALFORMED, variant=MalformedVariant.TRUNCATED),
            errors.MalformedResponseError,
            True,
        ),
        (
            Fault(FaultKind.MALFORMED, variant=MalformedVariant.EMPTY),
            errors.MalformedResponseError,
            True,
        ),
        (Fault(FaultKind.DELAY, seconds=5), errors.ResponseTimeoutError, True),
        (Fault(FaultKind.CODE, code=-99), errors.UnknownResultCodeError, True),
        (Fault(FaultKind.CODE, code=-1), errors.RateLimitedError, False),
    ],
    ids=lambda value: getattr(value, "kind", getattr(value, "__name__", str(value))),
)
async def test_faults_are_distinct_typed_errors(
    simulator: Simulator,
    session: aiohttp.ClientSession,
    fault: Fault,
    cls: type[errors.C123Error],
    ambiguous: bool,
) -> None:
    """Each way an answer can fail has its own error, and says if the send may have happened."""
    client = C123Client(make_config(simulator.url, timeout=TimeoutConfig(total=0.5)), session)
    # Aimed at the send, not at the getBalance that proves the key first.
    simulator.state.add_fault(replace(fault, action=Action.SEND_ONCE))
    with pytest.raises(cls) as info:
        await client.send_once([A], "hello")
    assert info.value.ambiguous is ambiguous
    assert info.value.retryable


async def test_accepted_then_dropped_is_ambiguous(client: C123Client, simulator: Simulator) -> None:
    """When the gateway takes the message but the answer is lost, the error says maybe-sent."""
    simulator.state.add_fault(Fault(FaultKind.ACCEPT_THEN_DROP, action=Action.SEND_ONCE))
    with pytest.raises(errors.ConnectionDroppedError) as info:
        await client.send_once([A], "hello")
    assert info.value.ambiguous
    assert len(simulator.state.messages) == 1


async def test_refused_connection_is_certainly_not_sent(session: aiohttp.ClientSession) -> None:
    """With nothing listening, the error says the message certainly did not go."""
    probe = Simulator()
    url = await probe.start()
    await probe.stop()
    client = C123Client(make_config(url), session)
    with pytest.raises(errors.ConnectFailedError) as info:
        await client.send_once([A], "hello")
    assert not info.value.ambiguous
    assert info.value.retryable


async def test_http_404_is_not_retryable(
    simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    """A wrong base URL path (404) is a configuration problem: not sent, not retryable."""
    client = C123Client(make_config(simulator.url + "/wrong"), session)
    with pytest.raises(errors.HttpStatusError) as info:
        await client.get_balance()
    assert (info.value.status, info.value.retryable, info.value.ambiguous) == (404, False, False)


async def test_validation_happens_before_any_call(client: C123Client, simulator: Simulator) -> None:
    """Invalid requests raise InvalidRequestError and never reach the gateway."""
    with pytest.raises(errors.InvalidRequestError, match=r"numbers\[0\]"):
        await client.send_once(["12345"], "x")
    with pytest.raises(errors.InvalidRequestError, match="content: has 1001"):
        await client.send_once([A], "x" * 1001)
    with pytest.raises(errors.InvalidRequestError, match="has 1 numbers"):
        await client.send_batch([(A, "x")])
    with pytest.raises(errors.InvalidRequestError, match="at: must be at least"):
        await client.send_once([A], "x", at=datetime.now(UTC))
    assert sum(simulator.state.calls.values()) == 0


async def test_send_many_uses_the_fewest_calls(client: C123Client, simulator: Simulator) -> None:
    """A thousand numbers with one text is one call; with their own texts, ten."""
    simulator.state.set_balance(remain=Decimal(1000))
    numbers = [f"139{n:08d}" for n in range(1000)]
    outcomes = await client.send_many([(n, "same") for n in numbers])
    assert len(outcomes) == 1
    assert simulator.state.calls[Action.SEND_ONCE] == 1
    outcomes = await client.send_many([(n, f"own {n}") for n in numbers])
    assert len(outcomes) == 10
    assert simulator.state.calls[Action.SEND_BATCH] == 10
    assert len(simulator.state.messages) == 2000


async def test_estimates_match_the_gateway_bill(client: C123Client, simulator: Simulator) -> None:
    """The client's segment estimate, signature included, equals what the gateway billed."""
    texts = ["短" * 60, "短" * 61, "长" * 134, "x" * 200]
    for index, text in enumerate(texts):
        estimate = client.outgoing(A, text)
        result = await client.send_once([A], text)
        assert result.segments == estimate.estimated_segments, index
        assert result.cost == estimate.estimated_cost, index


@pytest.mark.parametrize(
    ("fault", "label", "error"),
    [
        (Fault(FaultKind.MALFORMED), "malformed", "MalformedResponseError"),
        (
            Fault(FaultKind.MALFORMED, variant=MalformedVariant.WRONG_ROOT),
            "malformed",
            "MalformedResponseError",
        ),
        (Fault(FaultKind.CODE, code=-42), "unknown_code", "UnknownResultCodeError"),
        (Fault(FaultKind.HTTP500), "http_500", "HttpStatusError"),
        (Fault(FaultKind.CODE, code=-1), "answered", "RateLimitedError"),
    ],
    ids=["html", "wrong-root", "unknown-code", "http-500", "refused"],
)
async def test_a_failed_call_is_logged_and_labelled(
    simulator: Simulator,
    session: aiohttp.ClientSession,
    fault: Fault,
    label: str,
    error: str,
) -> None:
    """A malformed answer or an unknown code is a failed call: logged with the action and the
    error type, and its duration counted under an error label, on the raw path pollers use."""
    observed: list[tuple[str, str]] = []
    with structlog.testing.capture_logs() as logs:
        client = C123Client(
            make_config(simulator.url),
            session,
            observe=lambda action, result, seconds: observed.append((action.value, result)),
        )
        await client.get_balance()
        simulator.state.add_fault(replace(fault, action=Action.GET_REPLY))
        with pytest.raises(errors.C123Error) as info:
            await client.request(Action.GET_REPLY)
    assert type(info.value).__name__ == error
    assert observed[-1] == ("getReply", label)
    failed = [entry for entry in logs if entry["event"] == "gateway_call_failed"]
    assert [(entry["action"], entry["error"]) for entry in failed] == [("getReply", error)]
