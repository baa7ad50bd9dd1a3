"""The c123 gateway simulator, driven over raw HTTP and checked against the exact wire answers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from defusedxml.ElementTree import ParseError, fromstring
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    GatewayState,
    MalformedVariant,
    ManualClock,
    SimAccount,
    Simulator,
    SimulatorSettings,
    make_app,
    serve,
)

# 2025-11-25 00:00 in Shanghai, so schedule times in tests read plainly.
START = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
A, B, C = "15102110086", "15102110087", "15102110088"
ITEM = 'cid="500008880001" sid="1001"'
FORM = "application/x-www-form-urlencoded"


class Gateway:
    """Raw HTTP to one simulator: forms or query strings to the gateway, JSON to /_sim/."""

    def __init__(self, session: aiohttp.ClientSession, simulator: Simulator) -> None:
        self.session = session
        self.simulator = simulator
        self.state = simulator.state
        self.authkey = DEFAULT_AUTHKEY

    async def call(self, action: str, *, method: str = "POST", **params: str) -> str:
        """Call an action as the default account, check it is a protocol answer, return the body."""
        fields = {"action": action, "ac": DEFAULT_ACCOUNT, "authkey": self.authkey, **params}
        status, content_type, body = await self.raw(Action(action).path, fields, method=method)
        assert (status, content_type) == (200, "text/xml; charset=utf-8")
        return body

    async def raw(
        self, path: str, fields: dict[str, str], *, method: str = "POST"
    ) -> tuple[int, str, str]:
        """Send fields as a form body (POST) or a query string (GET)."""
        url = self.simulator.url + path
        if method == "POST":
            request = self.session.post(url, data=fields)
        else:
            request = self.session.get(url, params=fields)
        async with request as response:
            return response.status, response.headers["Content-Type"], await response.text()

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the admin API with a JSON body; return the status and the decoded answer."""
        data = body if isinstance(body, str) or body is None else json.dumps(body)
        async with self.session.request(method, self.simulator.url + path, data=data) as response:
            return response.status, await response.json()

    async def result(self, action: str, **params: str) -> str:
        """Just the result code of a call."""
        root = fromstring(await self.call(action, **params), forbid_dtd=True)
        return str(root.get("result"))

    async def remain(self) -> str:
        """The balance as getBalance writes it."""
        body = await self.call("getBalance")
        match = re.search(r'remain="([^"]*)"', body)
        assert match is not None, body
        return match.group(1)


MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def clock() -> ManualClock:
    """Time that stands still until the test advances it."""
    return ManualClock(START)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP client session for the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def make_gateway(
    clock: ManualClock, session: aiohttp.ClientSession
) -> AsyncIterator[MakeGateway]:
    """Start simulators with chosen settings on free loopback ports, on the test's clock."""
    started: list[Simulator] = []

    async def make(settings: SimulatorSettings | None = None) -> Gateway:
        simulator = Simulator(settings, clock=clock, monotonic=clock.monotonic)
        await simulator.start(host="127.0.0.1", port=0)
        started.append(simulator)
        return Gateway(session, simulator)

    yield make
    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def gw(make_gateway: MakeGateway) -> Gateway:
    """A simulator with the default settings."""
    return await make_gateway()


def failure(action: str, code: int) -> str:
    """The exact body of a failure answer."""
    return f'<xml name="{action}" result="{code}"/>'


# --- transport --------------------------------------------------------------------------------


async def test_send_once_answer_is_exact(gw: Gateway) -> None:
    """A sendOnce to two numbers answers one Item with the provider's exact attribute forms."""
    body = await gw.call("sendOnce", c="测试", m=f"{A},{B}", cgid="80", csid="0")
    item = f'{ITEM} msgid="158830675912720700" total="2" price="0.10" remain="99.800"'
    assert body == f'<xml name="sendOnce" result="1"><Item {item}/></xml>'


async def test_get_with_query_string_works_like_post(gw: Gateway) -> None:
    """The gateway also takes GET with a query string."""
    body = await gw.call("getBalance", method="GET")
    assert body == f'<xml name="getBalance" result="1"><Item {ITEM} remain="100.000"/></xml>'


async def test_form_plus_is_space_and_text_is_utf8(gw: Gateway) -> None:
    """A form body decodes as UTF-8 with "+" as space and "%2B" as plus."""
    body = f"action=sendOnce&ac={DEFAULT_ACCOUNT}&authkey={DEFAULT_AUTHKEY}&m={A}"
    body += "&c=hello+world+%E4%BD%A0%2B1"
    url = gw.simulator.url + "/OpenPlatform/OpenApi"
    async with gw.session.post(url, data=body, headers={"Content-Type": FORM}) as response:
        assert 'result="1"' in await response.text()
    assert gw.state.messages[0].content == "hello world 你+1"


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/OpenPlatform/OpenApi", "getReply"),
        ("/OpenPlatform/OpenApi", "getSendState"),
        ("/DataPlatform/DataApi", "sendOnce"),
        ("/DataPlatform/DataApi", "getBalance"),
        ("/OpenPlatform/OpenApi", "update"),
        ("/OpenPlatform/OpenApi", ""),
    ],
)
async def test_wrong_endpoint_or_unknown_action_is_404(gw: Gateway, path: str, action: str) -> None:
    """An action sent to the wrong endpoint, or an unknown one, gets a plain-text 404."""
    fields = {"action": action, "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
    status, content_type, body = await gw.raw(path, fields)
    assert (status, content_type.split(";")[0]) == (404, "text/plain")
    assert body.startswith("no action")
    assert gw.state.calls[action] == 1


# --- result codes -----------------------------------------------------------------------------


@pytest.mark.parametrize("ac", ["", "1001", "1001@", "@500008880001", "1@2@3"])
async def test_account_not_employee_at_enterprise_is_0(gw: Gateway, ac: str) -> None:
    """An account not of the form employee@enterprise answers 0."""
    status, _, body = await gw.raw(
        "/OpenPlatform/OpenApi", {"action": "getBalance", "ac": ac, "authkey": DEFAULT_AUTHKEY}
    )
    assert (status, body) == (200, failure("getBalance", 0))


async def test_unknown_account_is_minus_5(gw: Gateway) -> None:
    """A well-formed account the gateway does not know answers -5."""
    fields = {"action": "getBalance", "ac": "1002@500008880001", "authkey": DEFAULT_AUTHKEY}
    assert (await gw.raw("/OpenPlatform/OpenApi", fields))[2] == failure("getBalance", -5)


async def test_five_wrong_keys_lock_the_key_until_the_admin_unlocks_it(gw: Gateway) -> None:
    """Wrong keys answer -2; the fifth in a row locks the key (-3 even with the right key)."""
    gw.authkey = "0" * 32
    for _ in range(5):
        assert await gw.call("getBalance") == failure("getBalance", -2)
    gw.authkey = DEFAULT_AUTHKEY
    assert await gw.call("sendOnce", c="x", m=A) == failure("sendOnce", -3)
    assert gw.state.messages == []
    status, flags = await gw.admin(
        "POST", f"/_sim/accounts/{DEFAULT_ACCOUNT}/flags", {"key_locked": False}
    )
    assert (status, flags["key_locked"]) == (200, False)
    assert await gw.result("getBalance") == "1"


async def test_a_right_key_resets_the_wrong_key_count(gw: Gateway) -> None:
    """Only consecutive wrong keys count towards the lock."""
    for authkey in ["bad"] * 4 + [DEFAULT_AUTHKEY] + ["bad"] * 4:
        gw.authkey = authkey
        await gw.call("getBalance")
    gw.authkey = DEFAULT_AUTHKEY
    assert await gw.result("getBalance") == "1"


@pytest.mark.parametrize(
    ("flag", "code"), [("account_locked", -6), ("api_disabled", -7), ("key_locked", -3)]
)
async def test_account_flags_refuse_every_action(gw: Gateway, flag: str, code: int) -> None:
    """A locked account answers -6, disabled API sending -7, a locked key -3, for every action."""
    await gw.admin("POST", f"/_sim/accounts/{DEFAULT_ACCOUNT}/flags", {flag: True})
    for action in Action:
        assert await gw.result(action.value, c="x", m=A) == str(code)
    await gw.admin("POST", f"/_sim/accounts/{DEFAULT_ACCOUNT}/flags", {flag: False})
    assert await gw.result("getBalance") == "1"


async def test_rate_limit_is_a_token_bucket_over_all_actions(
    make_gateway: MakeGateway, clock: ManualClock
) -> None:
    """Past the burst every action answers -1 until the bucket refills at the set rate."""
    gw = await make_gateway(SimulatorSettings(rate_limit=2.0, rate_burst=3))
    assert await gw.result("sendOnce", c="x", m=A) == "1"
    assert await gw.result("getBalance") == "1"
    assert await gw.result("getReply") == "1"
    assert await gw.call("getSendState") == failure("getSendState", -1)
    assert await gw.call("sendOnce", c="x", m=A) == failure("sendOnce", -1)
    clock.advance(0.5)
    assert await gw.result("getBalance") == "1"
    assert await gw.result("getBalance") == "-1"
    assert len(gw.state.messages) == 1


@pytest.mark.parametrize("rate", [0.0, None])
async def test_rate_limit_can_be_turned_off(make_gateway: MakeGateway, rate: float | None) -> None:
    """With a rate of 0 or None no call is ever refused for speed."""
    gw = await make_gateway(SimulatorSettings(rate_limit=rate, rate_burst=1))
    results = [await gw.result("getBalance") for _ in range(20)]
    assert set(results) == {"1"}


async def test_channel_group_not_allowed_is_minus_8(make_gateway: MakeGateway) -> None:
    """A send with a cgid outside the account's channel groups answers -8; others pass."""
    account = SimAccount(channel_groups=frozenset({80}))
    gw = await make_gateway(SimulatorSettings(accounts=(account,)))
    assert await gw.call("sendOnce", c="x", m=A, cgid="81") == failure("sendOnce", -8)
    assert await gw.call("sendBatch", c="x{|}y", m=f"{A},{B}", cgid="x") == failure("sendBatch", -8)
    assert await gw.result("sendOnce", c="x", m=A, cgid="80") == "1"
    assert await gw.result("sendOnce", c="x", m=A) == "1"
    assert await gw.call("sendOnce", c="x", m=A, cgid="٨٠") == failure("sendOnce", -8)
    assert await gw.result("getBalance", cgid="81") == "1"


async def test_checks_run_in_the_documented_order(make_gateway: MakeGateway) -> None:
    """Format, account, key, flags, rate, channel group, parameters, balance: first failure wins."""
    account = SimAccount(balance=Decimal(0), channel_groups=frozenset({80}))
    gw = await make_gateway(SimulatorSettings(accounts=(account,), rate_limit=1.0, rate_burst=1))
    assert await gw.result("sendOnce", cgid="81", m="bad") == "-8"
    gw.state.account().bucket = None
    assert await gw.result("sendOnce", c="x", m="bad") == "-4"
    assert await gw.result("sendOnce", c="x", m=A) == "-9"
    gw.state.set_flags(DEFAULT_ACCOUNT, account_locked=True, api_disabled=True)
    assert await gw.result("getBalance") == "-6"
    gw.authkey = "bad"
    assert await gw.result("getBalance") == "-2"


BAD_SENDS: list[tuple[str, dict[str, str]]] = [
    ("sendOnce", {"c": "", "m": A}),
    ("sendOnce", {"c": "x", "m": ""}),
    ("sendOnce", {"c": "x"}),
    ("sendOnce", {"c": "x", "m": "+8615102110086"}),
    ("sendOnce", {"c": "x", "m": "8615102110086"}),
    ("sendOnce", {"c": "x", "m": "1510211008"}),
    ("sendOnce", {"c": "x", "m": "25102110086"}),
    ("sendOnce", {"c": "x", "m": "151 0211 0086"}),
    ("sendOnce", {"c": "x", "m": "1٥١٠٢١١٠٠٨٦"}),
    ("sendOnce", {"c": "x", "m": f"{A},"}),
    ("sendOnce", {"c": "x", "m": ",".join(f"1510{i:07d}" for i in range(1001))}),
    ("sendOnce", {"c": "x" * 1001, "m": A}),
    ("sendOnce", {"c": "x", "m": A, "t": "2025112500020"}),
    ("sendOnce", {"c": "x", "m": A, "t": "20251325000200"}),
    ("sendOnce", {"c": "x", "m": A, "t": "20251125000059"}),
    ("sendOnce", {"c": "x", "m": A, "t": "20251124160200"}),
    ("sendBatch", {"c": "x", "m": A}),
    ("sendBatch", {"c": "{|}".join("x" * 101), "m": ",".join(f"1510{i:07d}" for i in range(101))}),
    ("sendBatch", {"c": "x{|}y{|}z", "m": f"{A},{B}"}),
    ("sendBatch", {"c": "x{|}", "m": f"{A},{B}"}),
    ("sendBatch", {"c": "x{|}" + "y" * 1001, "m": f"{A},{B}"}),
    ("sendParam", {"c": "{p1}", "m": A, "p1": "x"}),
    ("sendParam", {"c": "{p1}{p2}", "m": f"{A},{B}", "p1": "x{|}y"}),
    ("sendParam", {"c": "{p1}", "m": f"{A},{B}", "p1": "x"}),
    ("sendParam", {"c": "{p1}", "m": f"{A},{B}", "p1": "x{|}y", "p3": "z"}),
    ("sendParam", {"c": "{p1}", "m": f"{A},{B}", "p1": "x{|}y", "p11": "a{|}b"}),
    ("sendParam", {"c": "{p11}", "m": f"{A},{B}", "p11": "a{|}b"}),
    ("sendParam", {"c": "{p0}", "m": f"{A},{B}", "p0": "a{|}b"}),
    ("sendParam", {"c": "{p01}", "m": f"{A},{B}", "p01": "a{|}b"}),
    ("sendParam", {"c": "{p1}", "m": f"{A},{B}", "p1": "{|}y"}),
    ("sendParam", {"c": "", "m": f"{A},{B}"}),
]


@pytest.mark.parametrize(("action", "params"), BAD_SENDS)
async def test_bad_parameters_are_minus_4_and_change_nothing(
    gw: Gateway, action: str, params: dict[str, str]
) -> None:
    """Each broken send rule answers -4, sends nothing and charges nothing."""
    assert await gw.call(action, **params) == failure(action, -4)
    assert gw.state.messages == []
    assert await gw.remain() == "100.000"


async def test_limits_themselves_are_accepted(make_gateway: MakeGateway) -> None:
    """1000 characters, the number caps and a schedule exactly a minute ahead are all allowed."""
    gw = await make_gateway(SimulatorSettings(max_once_numbers=3, rate_limit=None))
    assert await gw.result("sendOnce", c="字" * 1000, m=A, t="20251125000100") == "1"
    assert await gw.result("sendOnce", c="x", m=f"{A},{B},{C}") == "1"
    assert await gw.result("sendOnce", c="x", m=f"{A},{B},{C},15102110089") == "-4"
    hundred = [f"1510{i:07d}" for i in range(100)]
    assert await gw.result("sendBatch", c="{|}".join("x" * 100), m=",".join(hundred)) == "1"
    assert len(gw.state.messages) == 1 + 3 + 100


async def test_balance_too_low_is_minus_9_until_topped_up(make_gateway: MakeGateway) -> None:
    """A call costing more than the balance answers -9 and charges nothing; a top-up fixes it."""
    gw = await make_gateway(SimulatorSettings(accounts=(SimAccount(balance=Decimal("0.25")),)))
    assert await gw.call("sendBatch", c="a{|}b{|}c", m=f"{A},{B},{C}") == failure("sendBatch", -9)
    assert await gw.call("sendOnce", c="a", m=f"{A},{B},{C}") == failure("sendOnce", -9)
    assert (gw.state.messages, await gw.remain()) == ([], "0.250")
    status, answer = await gw.admin("POST", "/_sim/balance", {"add": "0.05"})
    assert (status, answer) == (200, {"account": DEFAULT_ACCOUNT, "remain": "0.300"})
    assert await gw.result("sendOnce", c="a", m=f"{A},{B},{C}") == "1"
    assert await gw.remain() == "0.000"


@pytest.mark.parametrize(("action", "code"), [("updateKey", -10), ("sendOnce", -11)])
async def test_forced_codes_answer_without_processing(gw: Gateway, action: str, code: int) -> None:
    """A code fault answers its code and nothing happens: the key stays, nothing is sent."""
    gw.state.add_fault(Fault(FaultKind.CODE, code=code, action=Action(action)))
    assert await gw.call(action, c="x", m=A) == failure(action, code)
    assert gw.state.messages == []
    assert await gw.result("getBalance") == "1"


# --- billing ----------------------------------------------------------------------------------


async def test_segments_count_the_signature_of_the_csid(make_gateway: MakeGateway) -> None:
    """Segments are counted on content plus the csid's signature, the default one when unknown."""
    account = SimAccount(signatures={0: "【smsbridge】", 7: "【x】"})
    gw = await make_gateway(SimulatorSettings(accounts=(account,)))
    fits = "a" * 59  # 59 + 11 signature characters = 70: one segment
    assert 'total="1" price="0.10" remain="99.900"' in await gw.call("sendOnce", c=fits, m=A)
    over = "a" * 60  # 71 characters: two parts of 67
    assert 'total="2" price="0.10" remain="99.700"' in await gw.call("sendOnce", c=over, m=A)
    assert 'total="2"' in await gw.call("sendOnce", c=over, m=A, csid="99")
    assert 'total="1"' in await gw.call("sendOnce", c=over, m=A, csid="7")
    assert 'total="16"' in await gw.call("sendOnce", c="字" * 1000, m=A)  # 1011 / 67
    assert 'total="15"' in await gw.call("sendOnce", c="字" * 1000, m=A, csid="7")  # 1003 / 67
    assert [m.segments for m in gw.state.messages] == [1, 2, 2, 1, 16, 15]
    assert gw.state.messages[0].price == Decimal("0.10")


async def test_send_once_total_is_segments_times_numbers(make_gateway: MakeGateway) -> None:
    """sendOnce bills every number and answers one Item whose total covers them all."""
    gw = await make_gateway(SimulatorSettings(accounts=(SimAccount(price=Decimal("0.055")),)))
    body = await gw.call("sendOnce", c="a" * 60, m=f"{A},{B},{C}")
    item = f'{ITEM} msgid="158830675912720700" total="6" price="0.06" remain="99.670"'
    assert body == f'<xml name="sendOnce" result="1"><Item {item}/></xml>'
    assert [(m.msgid, m.mobile) for m in gw.state.messages] == [
        ("158830675912720700", A),
        ("158830675912720700", B),
        ("158830675912720700", C),
    ]


async def test_send_batch_answers_one_item_per_number_with_falling_balance(gw: Gateway) -> None:
    """sendBatch gives each number its own msgid, segments and the balance after its message."""
    body = await gw.call("sendBatch", c="一{|}" + "二" * 60, m=f"{A},{B}")
    first = f'{ITEM} msgid="158830675912720700" total="1" price="0.10" remain="99.900"'
    second = f'{ITEM} msgid="158830675912720701" total="2" price="0.10" remain="99.700"'
    assert body == f'<xml name="sendBatch" result="1"><Item {first}/><Item {second}/></xml>'
    assert [m.content for m in gw.state.messages] == ["一", "二" * 60]


async def test_send_param_renders_each_number_s_text(gw: Gateway) -> None:
    """sendParam fills every {pN}, repeated ones too, with that number's value."""
    body = await gw.call(
        "sendParam",
        c="{p1}你好，你在{p2}吧，{p1}",
        m=f"{A},{B}",
        p1="小明{|}小王",
        p2="上海{|}北京",
        p3="unused{|}too",
    )
    assert body.count("<Item ") == 2
    assert [m.content for m in gw.state.messages] == [
        "小明你好，你在上海吧，小明",
        "小王你好，你在北京吧，小王",
    ]
    assert {m.action for m in gw.state.messages} == {Action.SEND_PARAM}


async def test_msgids_are_unique_18_digit_strings_above_2_to_the_53(gw: Gateway) -> None:
    """Message ids are 18 decimal digits, all different, and too big for a float."""
    await gw.call("sendBatch", c="a{|}b{|}c", m=f"{A},{B},{C}")
    await gw.call("sendOnce", c="a", m=f"{A},{B}")
    ids = list(dict.fromkeys(m.msgid for m in gw.state.messages))
    assert len(ids) == 4
    assert all(re.fullmatch(r"\d{18}", i) and int(i) > 2**53 for i in ids)
    assert ids == sorted(ids)


# --- delivery reports -------------------------------------------------------------------------


async def test_reports_come_due_after_the_delay_and_are_read_once(
    gw: Gateway, clock: ManualClock
) -> None:
    """Each (msgid, mobile) gets one DELIVRD report, due report_delay later, returned only once."""
    await gw.call("sendOnce", c="a", m=f"{A},{B}")
    empty = '<xml name="getSendState" result="1"></xml>'
    assert await gw.call("getSendState") == empty
    clock.advance(1.0)
    first = (
        '<Item id="1" msgid="158830675912720700" mobile="15102110086" result="2" return="DELIVRD"/>'
    )
    second = (
        '<Item id="2" msgid="158830675912720700" mobile="15102110087" result="2" return="DELIVRD"/>'
    )
    assert (
        await gw.call("getSendState")
        == f'<xml name="getSendState" result="1">{first}{second}</xml>'
    )
    assert await gw.call("getSendState") == empty


async def test_carrier_codes_set_the_report_and_its_result(make_gateway: MakeGateway) -> None:
    """Overrides from settings and the admin API set the code; result is 2, 1 or 0 to match."""
    gw = await make_gateway(SimulatorSettings(report_delay=0, carrier_codes={B: "UNDELIV"}))
    status, codes = await gw.admin(
        "POST", "/_sim/carrier-codes", {C: "ACCEPTD", "15102110089": "X"}
    )
    assert (status, codes) == (200, {B: "UNDELIV", C: "ACCEPTD", "15102110089": "X"})
    await gw.call("sendOnce", c="a", m=f"{A},{B},{C},15102110089")
    answer = fromstring(await gw.call("getSendState"), forbid_dtd=True)
    got = [(item.get("mobile"), item.get("result"), item.get("return")) for item in answer]
    assert got == [
        (A, "2", "DELIVRD"),
        (B, "1", "UNDELIV"),
        (C, "0", "ACCEPTD"),
        ("15102110089", "1", "X"),
    ]
    assert (await gw.admin("POST", "/_sim/carrier-codes", {B: None}))[1] == {
        C: "ACCEPTD",
        "15102110089": "X",
    }


async def test_zero_result_quirk_reports_delivrd_with_result_0(make_gateway: MakeGateway) -> None:
    """With the quirk on, delivered reports read result="0" return="DELIVRD" as seen in the wild."""
    gw = await make_gateway(SimulatorSettings(report_delay=0, zero_result_quirk=True))
    await gw.call("sendOnce", c="a", m=A)
    assert 'result="0" return="DELIVRD"' in await gw.call("getSendState")


async def test_scheduled_send_is_billed_now_and_reported_after_its_time(
    gw: Gateway, clock: ManualClock
) -> None:
    """A send with t (Shanghai time) is accepted and billed at once; its report waits for t."""
    assert await gw.result("sendOnce", c="a", m=A, t="20251125000200") == "1"
    assert await gw.remain() == "99.900"
    message = gw.state.messages[0]
    assert message.scheduled_for == datetime(2025, 11, 25, 0, 2, tzinfo=SHANGHAI)
    assert message.submitted_at == START
    clock.advance(120)
    assert "<Item" not in await gw.call("getSendState")
    clock.advance(1)
    assert 'mobile="15102110086" result="2"' in await gw.call("getSendState")


# --- replies ----------------------------------------------------------------------------------


async def test_replies_are_returned_once_with_time_and_last_msgid(gw: Gateway) -> None:
    """getReply returns replies once, with epoch seconds and the last msgid sent to that mobile."""
    await gw.call("sendOnce", c="a", m=A)
    status, queued = await gw.admin(
        "POST", "/_sim/replies", {"mobile": A, "content": "收到", "time": 1764000000}
    )
    assert (status, queued["msgid"]) == (201, "158830675912720700")
    gw.state.inject_reply(B, 'a"b<c>&d\ne\rf\tg', time=datetime(2025, 11, 24, 16, 0, 1, tzinfo=UTC))
    first = f'id="1" time="1764000000" mobile="{A}" content="收到" msgid="158830675912720700"'
    escaped = "a&quot;b&lt;c&gt;&amp;d&#10;e&#13;f&#9;g"
    second = f'id="2" time="1764000001" mobile="{B}" content="{escaped}"'
    assert await gw.call("getReply") == (
        f'<xml name="getReply" result="1"><Item {first}/><Item {second}/></xml>'
    )
    assert await gw.call("getReply") == '<xml name="getReply" result="1"></xml>'


async def test_reply_time_in_milliseconds_when_set(make_gateway: MakeGateway) -> None:
    """reply_time_millis writes reply times in milliseconds, as in the provider's example."""
    gw = await make_gateway(SimulatorSettings(reply_time_millis=True))
    await gw.admin("POST", "/_sim/replies", {"mobile": A, "content": "x"})
    assert f'time="{int(START.timestamp()) * 1000}"' in await gw.call("getReply")


def _xml_char(char: str) -> bool:
    code = ord(char)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or code >= 0x10000
    )


@pytest.fixture
async def unlimited(make_gateway: MakeGateway) -> Gateway:
    """A simulator without a rate limit, for tests that make many calls."""
    return await make_gateway(SimulatorSettings(rate_limit=None))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.text(st.characters(codec="utf-8").filter(_xml_char)))
async def test_any_xml_text_round_trips_through_get_reply(unlimited: Gateway, content: str) -> None:
    """Any text XML 1.0 can carry comes back from getReply exactly as injected."""
    status, _ = await unlimited.admin("POST", "/_sim/replies", {"mobile": A, "content": content})
    assert status == 201
    fields = {"action": "getReply", "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
    async with unlimited.session.post(
        unlimited.simulator.url + "/DataPlatform/DataApi", data=fields
    ) as response:
        raw = await response.read()
    items = list(fromstring(raw, forbid_dtd=True))
    assert [item.get("content") for item in items] == [content]


_PARAM_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", A, f"{A},{B}", "{p1}", "x{|}y", "20251125000200", "80", "7", "p1"]),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    action=st.sampled_from([a.value for a in Action if a.is_send]),
    params=st.dictionaries(
        st.sampled_from(["c", "m", "t", "cgid", "csid", "p1", "p2", "p10", "p11", "p9999999"]),
        _PARAM_VALUES,
    ),
)
async def test_any_send_parameters_get_a_protocol_answer(
    unlimited: Gateway, action: str, params: dict[str, str]
) -> None:
    """Whatever the parameters, a send is answered with a documented result code, never a crash."""
    assert await unlimited.result(action, **params) in {"1", "-4"}


# --- balance and key --------------------------------------------------------------------------


async def test_update_key_issues_a_new_key_and_kills_the_old_one(gw: Gateway) -> None:
    """updateKey answers a fresh 32-character upper-case hex key; the old key stops at once."""
    body = await gw.call("updateKey")
    match = re.fullmatch(
        rf'<xml name="updateKey" result="1"><Item {ITEM} authkey="([0-9A-F]{{32}})"/></xml>', body
    )
    assert match is not None, body
    assert await gw.call("getBalance") == failure("getBalance", -2)
    gw.authkey = match.group(1)
    assert await gw.result("getBalance") == "1"
    assert match.group(1) != DEFAULT_AUTHKEY


# --- faults -----------------------------------------------------------------------------------


async def test_delay_fault_answers_late_and_still_processes(gw: Gateway) -> None:
    """A delay fault holds the answer; a client that gives up meanwhile still got its SMS sent."""
    gw.state.add_fault(Fault(FaultKind.DELAY, seconds=0.2, count=2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await gw.result("getBalance") == "1"
    assert loop.time() - started >= 0.2
    url = gw.simulator.url + "/OpenPlatform/OpenApi"
    fields = {"action": "sendOnce", "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
    with pytest.raises(asyncio.TimeoutError):
        async with gw.session.post(
            url, data={**fields, "c": "x", "m": A}, timeout=aiohttp.ClientTimeout(total=0.05)
        ):
            pass
    await gw.state.wait_for(lambda state: len(state.messages) == 1, timeout=5)


@pytest.mark.parametrize("kind", [FaultKind.DROP, FaultKind.ACCEPT_THEN_DROP])
async def test_drop_faults_close_the_connection_without_an_answer(
    gw: Gateway, kind: FaultKind
) -> None:
    """drop closes before processing; accept_then_drop sends and bills, then closes."""
    gw.state.add_fault(Fault(kind, action=Action.SEND_ONCE))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await gw.call("sendOnce", c="x", m=A)
    accepted = kind is FaultKind.ACCEPT_THEN_DROP
    assert len(gw.state.messages) == (1 if accepted else 0)
    assert await gw.remain() == ("99.900" if accepted else "100.000")
    assert gw.state.calls["sendOnce"] == 1


async def test_http500_fault_answers_500_without_processing(gw: Gateway) -> None:
    """An http500 fault answers HTTP 500 and sends nothing."""
    gw.state.add_fault(Fault(FaultKind.HTTP500))
    fields = {"action": "sendOnce", "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
    status, _, _ = await gw.raw("/OpenPlatform/OpenApi", {**fields, "c": "x", "m": A})
    assert status == 500
    assert gw.state.messages == []


@pytest.mark.parametrize("variant", list(MalformedVariant))
async def test_malformed_fault_answers_200_with_a_body_that_is_not_the_protocol(
    gw: Gateway, variant: MalformedVariant
) -> None:
    """Each malformed variant answers 200 with a body no protocol parser may accept."""
    await gw.admin("POST", "/_sim/faults", {"kind": "malformed", "variant": variant.value})
    fields = {"action": "sendOnce", "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
    status, content_type, body = await gw.raw("/OpenPlatform/OpenApi", {**fields, "c": "x"})
    assert status == 200
    if variant is MalformedVariant.HTML:
        assert content_type.startswith("text/html")
        assert body.startswith("<html>")
    elif variant is MalformedVariant.EMPTY:
        assert body == ""
    elif variant is MalformedVariant.TRUNCATED:
        with pytest.raises(ParseError):
            fromstring(body, forbid_dtd=True)
    else:
        assert fromstring(body, forbid_dtd=True).tag != "xml"
    assert gw.state.messages == []


async def test_faults_apply_to_their_action_count_times_then_clear(gw: Gateway) -> None:
    """A fault with an action and count hits only that action, that many times; DELETE clears."""
    await gw.admin(
        "POST", "/_sim/faults", {"kind": "code", "code": -1, "count": 2, "action": "sendOnce"}
    )
    await gw.admin("POST", "/_sim/faults", {"kind": "http500", "action": "getReply"})
    assert await gw.result("getBalance") == "1"
    assert await gw.result("sendOnce", c="x", m=A) == "-1"
    assert await gw.result("sendOnce", c="x", m=A) == "-1"
    assert await gw.result("sendOnce", c="x", m=A) == "1"
    status, listed = await gw.admin("GET", "/_sim/faults")
    assert (status, [f["kind"] for f in listed]) == (200, ["http500"])
    assert await gw.admin("DELETE", "/_sim/faults") == (200, {"cleared": 1})
    assert await gw.result("getReply") == "1"


# --- admin API --------------------------------------------------------------------------------


async def test_admin_lists_messages_and_counts_every_call(gw: Gateway, clock: ManualClock) -> None:
    """/_sim/messages lists what was sent; /_sim/calls counts every request, refused ones too."""
    await gw.call("sendOnce", c="你好", m=A, t="20251125010000")
    await gw.call("sendOnce", c="", m=A)
    await gw.raw("/DataPlatform/DataApi", {"action": "getBalance"})
    status, messages = await gw.admin("GET", "/_sim/messages")
    assert (status, messages) == (
        200,
        [
            {
                "msgid": "158830675912720700",
                "mobile": A,
                "content": "你好",
                "segments": 1,
                "price": "0.10",
                "submitted_at": "2025-11-24T16:00:00+00:00",
                "scheduled_for": "2025-11-25T01:00:00+08:00",
                "action": "sendOnce",
                "account": DEFAULT_ACCOUNT,
            }
        ],
    )
    assert await gw.admin("GET", "/_sim/calls") == (200, {"sendOnce": 2, "getBalance": 1})


async def test_admin_sets_balance_and_reset_restores_settings(gw: Gateway) -> None:
    """The balance can be set or topped up; reset brings back the configured state."""
    assert await gw.admin("POST", "/_sim/balance", {"remain": 12.5}) == (
        200,
        {"account": DEFAULT_ACCOUNT, "remain": "12.500"},
    )
    await gw.call("sendOnce", c="x", m=A)
    gw.state.add_fault(Fault(FaultKind.HTTP500))
    assert await gw.admin("POST", "/_sim/reset") == (200, {"reset": True})
    assert (gw.state.messages, gw.state.faults) == ([], [])
    assert await gw.remain() == "100.000"
    assert 'msgid="158830675912720701"' in await gw.call("sendOnce", c="x", m=A)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/_sim/faults", {"kind": "explode"}, "kind"),
        ("/_sim/faults", {"count": 1}, "kind"),
        ("/_sim/faults", {"kind": "drop", "count": 0}, "count"),
        ("/_sim/faults", {"kind": "drop", "count": "2"}, "count"),
        ("/_sim/faults", {"kind": "drop", "action": "sendTwice"}, "action"),
        ("/_sim/faults", {"kind": "delay", "seconds": -1}, "seconds"),
        ("/_sim/faults", {"kind": "code"}, "code"),
        ("/_sim/faults", {"kind": "malformed", "variant": "xml"}, "variant"),
        ("/_sim/faults", {"kind": "drop", "when": "now"}, "when"),
        ("/_sim/faults", "[1, 2]", "body"),
        ("/_sim/faults", "{", "body"),
        ("/_sim/replies", {"mobile": A}, "content"),
        ("/_sim/replies", {"mobile": A, "content": 5}, "content"),
        ("/_sim/replies", {"mobile": A, "content": "\x00"}, "content"),
        ("/_sim/replies", {"mobile": A, "content": "x", "time": "yesterday"}, "time"),
        ("/_sim/replies", {"mobile": A, "content": "x", "account": "9@9"}, "account"),
        ("/_sim/balance", {"remain": "1", "add": "1"}, "remain"),
        ("/_sim/balance", {}, "remain"),
        ("/_sim/balance", {"remain": "lots"}, "remain"),
        ("/_sim/balance", {"add": "-200"}, "add"),
        ("/_sim/carrier-codes", {A: 5}, A),
        ("/_sim/carrier-codes", {A: ""}, A),
        ("/_sim/carrier-codes", {"+8615102110086": "UNDELIV"}, "+8615102110086"),
        (f"/_sim/accounts/{DEFAULT_ACCOUNT}/flags", {"key_locked": "yes"}, "key_locked"),
    ],
)
async def test_bad_admin_input_is_400_naming_the_field(
    gw: Gateway, path: str, body: Any, field: str
) -> None:
    """Admin input the simulator cannot take answers 400 with the offending field."""
    status, answer = await gw.admin("POST", path, body)
    assert (status, answer["field"]) == (400, field)
    assert gw.state.faults == []


async def test_flags_of_an_unknown_account_is_404(gw: Gateway) -> None:
    """Flags for an account the simulator does not have answer 404."""
    status, answer = await gw.admin("POST", "/_sim/accounts/9@9/flags", {"key_locked": True})
    assert (status, answer["field"]) == (404, "ac")


async def test_wait_for_times_out_when_the_state_never_matches() -> None:
    """wait_for raises TimeoutError rather than hanging."""
    with pytest.raises(TimeoutError):
        await GatewayState().wait_for(lambda state: bool(state.messages), timeout=0.05)


# --- embedding --------------------------------------------------------------------------------


async def test_make_app_runs_under_aiohttp_server(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    """make_app gives an application pytest-aiohttp's server can run."""
    server = await aiohttp_server(make_app(GatewayState()))
    fields = {"action": "getBalance", "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
    async with session.post(server.make_url("/OpenPlatform/OpenApi"), data=fields) as response:
        assert 'remain="100.000"' in await response.text()


async def test_serve_logs_its_url_but_never_the_key(session: aiohttp.ClientSession) -> None:
    """serve() listens until cancelled and logs simulator_listening with url and account."""
    with capture_logs() as logs:
        task = asyncio.create_task(serve("127.0.0.1", 0, SimulatorSettings()))
        async with asyncio.timeout(5):
            while not logs:  # noqa: ASYNC110 - serve() signals readiness only by its log line
                await asyncio.sleep(0)
        assert logs[0]["event"] == "simulator_listening"
        assert logs[0]["account"] == DEFAULT_ACCOUNT
        fields = {"action": "getBalance", "ac": DEFAULT_ACCOUNT, "authkey": DEFAULT_AUTHKEY}
        async with session.post(logs[0]["url"] + "/OpenPlatform/OpenApi", data=fields) as reply:
            assert 'result="1"' in await reply.text()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert logs[-1]["event"] == "simulator_stopped"
    assert DEFAULT_AUTHKEY not in repr(logs)


async def test_logs_mask_numbers_and_never_show_keys(gw: Gateway) -> None:
    """Send and key-rotation logs show masked numbers and no key."""
    with capture_logs() as logs:
        await gw.call("sendOnce", c="x", m=f"{A},{B}")
        body = await gw.call("updateKey")
    new_key = re.search(r'authkey="([^"]+)"', body)
    assert new_key is not None
    text = repr(logs)
    assert "151****0086" in text
    assert A not in text
    assert B not in text
    assert DEFAULT_AUTHKEY not in text
    assert new_key.group(1) not in text


async def test_simulator_context_manager_starts_and_stops() -> None:
    """Simulator works as an async context manager and forgets its URL when stopped."""
    async with Simulator() as simulator:
        assert simulator.url.startswith("http://127.0.0.1:")
    with pytest.raises(RuntimeError):
        _ = simulator.url
