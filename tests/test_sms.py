"""Numbers, masking and segment arithmetic."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sms import (
    InvalidNumberError,
    estimate,
    mask_number,
    mask_text,
    normalize_number,
    segment_count,
    sms_length,
)

mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("15102110086", "15102110086"),
        ("+8615102110086", "15102110086"),
        ("8615102110086", "15102110086"),
        ("008615102110086", "15102110086"),
        ("+86 151-0211-0086", "15102110086"),
    ],
)
def test_prefixes_and_separators_are_stripped(raw: str, expected: str) -> None:
    """Accepted prefixes and separators normalise to the bare 11 digits."""
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "1510211008", "151021100861", "25102110086", "+4915102110086", "1510211008a"]
)
def test_non_mainland_numbers_are_refused(raw: str) -> None:
    """Anything but 11 digits starting with 1 is refused with a message saying what is allowed."""
    with pytest.raises(InvalidNumberError, match="11 digits starting with 1"):
        normalize_number(raw)


def test_refusal_message_masks_the_number() -> None:
    """The error text never carries the whole number it refused."""
    with pytest.raises(InvalidNumberError) as info:
        normalize_number("+1 15102110086")
    assert "15102110086" not in str(info.value)


@given(mobiles, st.sampled_from(["", "+86", "86", "0086"]))
def test_normalising_is_idempotent(number: str, prefix: str) -> None:
    """Any mainland number with any accepted prefix normalises to itself, and stays so."""
    assert normalize_number(prefix + number) == number
    assert normalize_number(normalize_number(prefix + number)) == number


@given(mobiles)
def test_mask_keeps_three_and_four(number: str) -> None:
    """A masked number shows the first three and last four digits only."""
    masked = mask_number(number)
    assert masked == number[:3] + "****" + number[-4:]


non_digits = st.text(st.characters(blacklist_categories=["Nd"]))


@given(non_digits, mobiles, non_digits)
def test_mask_text_hides_embedded_numbers(before: str, number: str, after: str) -> None:
    """No full number survives mask_text, wherever it stands in a text."""
    masked = mask_text(before + number + after)
    assert number not in masked
    assert number[:3] + "****" + number[-4:] in masked


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (1000, 15)]
)
def test_seventy_then_sixty_seven(length: int, segments: int) -> None:
    """One segment holds 70 characters; a long message 67 per part."""
    assert segment_count("字" * length) == segments


def test_signature_counts_toward_length() -> None:
    """The signature appended by the gateway can push a text into a second segment."""
    assert segment_count("a" * 65) == 1
    assert segment_count("a" * 65, "【smsbridge】") == 2


def test_emoji_counts_as_two() -> None:
    """Characters outside the BMP take two UCS-2 units, as the carrier bills them."""
    assert sms_length("😀") == 2


@given(st.text(min_size=1), st.text(max_size=12))
def test_segments_match_the_rule(text: str, signature: str) -> None:
    """Segment count follows the 70/67 rule over text and signature together."""
    n = sms_length(text) + sms_length(signature)
    assert segment_count(text, signature) == (1 if n <= 70 else math.ceil(n / 67))


def test_estimate_multiplies_exactly() -> None:
    """Cost is price times segments, in Decimal."""
    result = estimate("字" * 71, "", Decimal("0.10"))
    assert (result.segments, result.cost) == (2, Decimal("0.20"))
