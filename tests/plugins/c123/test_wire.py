"""Reading gateway answers: typed results for good ones, typed errors for everything else."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.plugins.c123 import errors, wire
from bridge.plugins.c123.models import Action, DeliveryStatus


def test_send_once_answer_from_the_document() -> None:
    """The document's sendOnce example parses with ids as strings and money as Decimal."""
    body = (
        b'<xml name="sendOnce" result="1">\n'
        b'<Item cid="5012" sid="1001" msgid="158830675912720700" total="2" price="0.10"'
        b' remain="170.040"/>\n</xml>'
    )
    result = wire.parse_send(Action.SEND_ONCE, body, ("15102110086", "15102110087"))
    (item,) = result.items
    assert item.msgid == "158830675912720700"
    assert (item.segments, item.price, item.remain) == (2, Decimal("0.10"), Decimal("170.040"))
    assert result.msgid_for("15102110087") == "158830675912720700"
    assert result.cost == Decimal("0.20")


def test_old_fee_attribute_is_read_as_price() -> None:
    """Answers that name the unit price `fee` still parse."""
    body = b'<xml name="sendOnce" result="1"><Item msgid="9" total="1" fee="0.1" remain="3"/></xml>'
    assert wire.parse_send(Action.SEND_ONCE, body, ("15102110086",)).items[0].price == Decimal(
        "0.1"
    )


def test_batch_answer_maps_ids_to_numbers() -> None:
    """Each number of a batch gets the msgid of its own Item."""
    body = (
        b'<xml name="sendBatch" result="1"><Item msgid="1" total="1" price="0.10" remain="2"/>'
        b'<Item msgid="2" total="1" price="0.10" remain="1.9"/></xml>'
    )
    result = wire.parse_send(Action.SEND_BATCH, body, ("15102110086", "15102110087"))
    assert result.msgid_for("15102110087") == "2"
    assert result.remain == Decimal("1.9")


def test_batch_answer_with_missing_items_is_malformed() -> None:
    """An answer that does not account for every number is not trusted."""
    body = (
        b'<xml name="sendBatch" result="1"><Item msgid="1" total="1" price="1" remain="2"/></xml>'
    )
    with pytest.raises(errors.MalformedResponseError, match="expected 2"):
        wire.parse_send(Action.SEND_BATCH, body, ("15102110086", "15102110087"))


@pytest.mark.parametrize(("code", "cls"), sorted(errors.REFUSALS.items()))
def test_every_documented_code_has_its_error(code: int, cls: type[errors.C123Error]) -> None:
    """Each documented failure code raises its own error class with the code in the text."""
    body = f'<xml name="getBalance" result="{code}"/>'.encode()
    with pytest.raises(cls, match=f"code {code}"):
        wire.parse_balance(body)


def test_retry_and_ambiguity_follow_the_table() -> None:
    """Only -1, -9, -10 and -11 are worth retrying; only -10 may have sent."""
    retryable = {code for code, cls in errors.REFUSALS.items() if cls.retryable}
    ambiguous = {code for code, cls in errors.REFUSALS.items() if cls().ambiguous}
    assert retryable == {-1, -9, -10, -11}
    assert ambiguous == {-10}


def test_undocumented_code_is_its_own_error() -> None:
    """A code the document does not list is reported as such and treated as ambiguous."""
    with pytest.raises(errors.UnknownResultCodeError, match="'-99'") as info:
        wire.parse_balance(b'<xml name="getBalance" result="-99"/>')
    assert info.value.ambiguous


def test_positive_codes_are_success() -> None:
    """The provider's SDK treats any positive result as success."""
    body = b'<xml name="getBalance" result="2"><Item cid="1" sid="2" remain="5.5"/></xml>'
    assert wire.parse_balance(body).remain == Decimal("5.5")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty body"),
        (b"<html><body>502 Bad Gateway</body></html>", "root element"),
        (b'<xml name="getBalance" result="1"><Item', "not XML"),
        (b'<xml name="sendOnce" result="1"/>', "for action"),
        (b'<xml name="getBalance"/>', "no result"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><xml name="getBalance" result="1"/>', "not XML"),
    ],
)
def test_malformed_answers(body: bytes, problem: str) -> None:
    """Non-protocol bodies, DTDs included, are MalformedResponseError naming the problem."""
    with pytest.raises(errors.MalformedResponseError, match=problem) as info:
        wire.parse_balance(body)
    assert info.value.ambiguous


def test_report_status_comes_from_the_carrier_code() -> None:
    """result=0 with DELIVRD is delivered: the carrier code is the truth."""
    body = (
        b'<xml name="getSendState" result="1">'
        b'<Item id="1" msgid="158830675912720700" mobile="15102110086" result="0"'
        b' return="DELIVRD"/>'
        b'<Item id="2" msgid="2" mobile="15102110087" result="1" return="DTBLACK"/>'
        b'<Item id="3" msgid="3" mobile="15102110088" result="2" return="NEWCODE"/></xml>'
    )
    first, second, third = wire.parse_reports(body)
    assert first.status is DeliveryStatus.DELIVERED
    assert (second.status, second.description) == (DeliveryStatus.FAILED, "number is blacklisted")
    assert third.status is DeliveryStatus.DELIVERED
    assert third.description == "carrier code NEWCODE"


def test_empty_success_is_no_records() -> None:
    """An empty success answer is an empty list, not an error."""
    assert wire.parse_reports(b'<xml name="getSendState" result="1"></xml>') == []
    assert wire.parse_replies(b'<xml name="getReply" result="1"/>') == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1373883378", datetime(2013, 7, 15, 10, 16, 18, tzinfo=UTC)),
        ("1373883378000", datetime(2013, 7, 15, 10, 16, 18, tzinfo=UTC)),
        ("soon", None),
    ],
)
def test_reply_time_seconds_or_millis(raw: str, expected: datetime | None) -> None:
    """Reply times above 10^11 are milliseconds; unreadable ones keep the reply with no time."""
    body = (
        f'<xml name="getReply" result="1"><Item id="1" time="{raw}" mobile="1" content="ok"/></xml>'
    )
    (reply,) = wire.parse_replies(body.encode())
    assert (reply.time, reply.raw_time, reply.content) == (expected, raw, "ok")


def test_gb18030_answers_are_read() -> None:
    """A gateway answering in GB18030 against its own document still gets read."""
    body = '<xml name="getReply" result="1"><Item time="1" mobile="1" content="收到"/></xml>'
    (reply,) = wire.parse_replies(body.encode("gb18030"))
    assert reply.content == "收到"


def test_key_rotation_repr_hides_the_key() -> None:
    """The new key is readable from the result but never from its repr."""
    body = (
        b'<xml name="updateKey" result="1">'
        b'<Item cid="1" sid="2" authkey="ABCDEF0123456789ABCDEF0123456789"/></xml>'
    )
    rotation = wire.parse_key_rotation(body)
    assert rotation.authkey == "ABCDEF0123456789ABCDEF0123456789"
    assert "ABCDEF" not in repr(rotation)


xml_fragments = st.sampled_from(
    [
        '<xml name="getSendState" result="1">',
        "</xml>",
        "<Item ",
        'msgid="1" ',
        'mobile="x" ',
        'result="2" ',
        'return="DELIVRD"',
        "/>",
        ">",
        '"',
        "&amp;",
        "&#0;",
        "<!DOCTYPE",
        "]]>",
        "\x00",
    ]
)


@given(st.one_of(st.binary(), st.lists(xml_fragments).map("".join).map(str.encode)))
@pytest.mark.parametrize(
    "parse",
    [
        wire.parse_reports,
        wire.parse_replies,
        wire.parse_balance,
        wire.parse_key_rotation,
        lambda body: wire.parse_send(Action.SEND_BATCH, body, ("15102110086", "15102110087")),
    ],
)
def test_no_answer_raises_anything_but_typed_errors(parse: object, body: bytes) -> None:
    """Whatever bytes come back, parsing returns a result or raises a C123Error."""
    with contextlib.suppress(errors.C123Error):
        parse(body)  # type: ignore[operator]
