"""Requests are checked against the gateway's rules before any call, naming field and limit."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.plugins.c123.errors import InvalidRequestError
from bridge.plugins.c123.validation import (
    check_account,
    check_content,
    check_key,
    check_numbers,
    check_pairs,
    check_params,
    check_schedule,
    render_param,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=SHANGHAI)


def test_account_form() -> None:
    """Accounts must be employee@enterprise."""
    assert check_account("1001@500008880001") == "1001@500008880001"
    with pytest.raises(InvalidRequestError, match=r"gateway\.account: must look like employee@"):
        check_account("500008880001")


def test_key_form_never_echoes_the_key() -> None:
    """A malformed key is refused without repeating it."""
    with pytest.raises(InvalidRequestError) as info:
        check_key("lowercasekey0123456789abcdefabcd")
    assert "lowercasekey" not in str(info.value)
    assert "32 upper-case" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "content: must not be empty"),
        ("字" * 1001, "content: has 1001 characters; the limit is 1000"),
        ("bell\x07", "content: contains control character U+0007"),
    ],
)
def test_content_limits(text: str, message: str) -> None:
    """Empty, overlong and uncarriable texts are refused with the limit named."""
    with pytest.raises(InvalidRequestError, match=message.replace("+", r"\+")):
        check_content(text)


def test_content_may_have_newlines_and_a_thousand_chars() -> None:
    """Line breaks and exactly 1000 characters are fine."""
    assert check_content("a\r\nb\tc" + "x" * 994) is not None


def test_numbers_bounds_and_index() -> None:
    """Numbers are normalised; a bad one is named by its index; counts are bounded."""
    assert check_numbers(["+8615102110086", "15102110086"], 1, 5) == ["15102110086"]
    with pytest.raises(InvalidRequestError, match=r"numbers\[1\]"):
        check_numbers(["15102110086", "123"], 1, 5)
    with pytest.raises(InvalidRequestError, match="has 1 numbers; one call takes 2 to 100"):
        check_numbers(["15102110086"], 2, 100)


def test_batch_pairs() -> None:
    """A batch needs distinct numbers and separator-free contents."""
    with pytest.raises(InvalidRequestError, match="appears twice"):
        check_pairs([("15102110086", "a"), ("+8615102110086", "b")])
    with pytest.raises(InvalidRequestError, match=r"contents\[1\]: must not contain"):
        check_pairs([("15102110086", "a"), ("15102110087", "x{|}y")])


def test_params_rules() -> None:
    """Placeholders need values, one per number, only p1..p10."""
    assert check_params("{p1}你好 {p1}", {"p1": ["a", "b"]}, 2) == {"p1": ["a", "b"]}
    with pytest.raises(InvalidRequestError, match=r"params\.p2: is used in the template"):
        check_params("{p1} {p2}", {"p1": ["a", "b"]}, 2)
    with pytest.raises(InvalidRequestError, match=r"params\.p1: has 1 values; there are 2 numbers"):
        check_params("{p1}", {"p1": ["a"]}, 2)
    with pytest.raises(InvalidRequestError, match=r"params\.p11: only p1\.\.p10"):
        check_params("{p11}", {"p11": ["a", "b"]}, 2)
    with pytest.raises(InvalidRequestError, match="template: has no"):
        check_params("{P1}", {}, 2)


def test_render_param_repeats() -> None:
    """A placeholder may repeat and each number gets its own value."""
    assert render_param(
        "{p1}你好，你在{p2}吗 {p1}", {"p1": ["小明", "小王"], "p2": ["上海", "北京"]}, 1
    ) == ("小王你好，你在北京吗 小王")


def test_schedule_needs_a_minute() -> None:
    """Schedule times under a minute ahead are refused; others render in the gateway zone."""
    with pytest.raises(InvalidRequestError, match="at: must be at least 60 s from now"):
        check_schedule(NOW + timedelta(seconds=59), SHANGHAI, NOW)
    assert check_schedule(NOW + timedelta(minutes=1), SHANGHAI, NOW) == "20261125100100"
    assert check_schedule(None, SHANGHAI, NOW) is None


def test_schedule_naive_time_is_gateway_time_and_utc_converts() -> None:
    """A naive time means the gateway's zone; an aware one is converted to it."""
    assert check_schedule(datetime(2026, 12, 1, 9, 0), SHANGHAI, NOW) == "20261201090000"
    utc = datetime(2026, 12, 1, 1, 0, tzinfo=ZoneInfo("UTC"))
    assert check_schedule(utc, SHANGHAI, NOW) == "20261201090000"


def test_schedule_fractions_round_up() -> None:
    """Fractional seconds round up, so truncation never lands inside the minute."""
    at = NOW + timedelta(seconds=59, microseconds=999_999)
    with pytest.raises(InvalidRequestError):
        check_schedule(at - timedelta(seconds=1), SHANGHAI, NOW)
    assert check_schedule(at, SHANGHAI, NOW) == "20261125100100"
