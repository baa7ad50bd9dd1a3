"""Mainland mobile numbers (normalise, validate, mask) and SMS segment and cost arithmetic."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

# One part of a long SMS loses 3 characters to the concatenation header (UCS-2: 140 bytes).
SINGLE_SEGMENT_CHARS = 70
MULTI_SEGMENT_CHARS = 67

_MOBILE = re.compile(r"1[0-9]{10}")
_SEPARATORS = re.compile(r"[\s\-()]")
_ANY_MOBILE = re.compile(r"(?<![0-9])(?:\+?86)?(1[0-9]{2})[0-9]{4}([0-9]{4})(?![0-9])")


class InvalidNumberError(ValueError):
    """A string that is not a mainland China mobile number."""

    def __init__(self, raw: str) -> None:
        super().__init__(
            f"{mask_text(raw)!r} is not a mainland mobile number "
            "(11 digits starting with 1, optionally prefixed by +86 or 86)"
        )
        self.raw = raw


def normalize_number(raw: str) -> str:
    """Return the bare 11-digit form of a mainland mobile number, or raise InvalidNumberError."""
    number = _SEPARATORS.sub("", raw)
    for prefix in ("+86", "0086", "86"):
        if number.startswith(prefix) and len(number) == len(prefix) + 11:
            number = number[len(prefix) :]
            break
    if not _MOBILE.fullmatch(number):
        raise InvalidNumberError(raw)
    return number


def mask_number(number: str) -> str:
    """Mask a number the way the provider's documents do: 151****0086."""
    if len(number) >= 11:
        return f"{number[:3]}****{number[-4:]}"
    return "*" * len(number)


def has_mobile(text: str) -> bool:
    """True when a mainland mobile number appears anywhere in a text (what mask_text masks)."""
    return _ANY_MOBILE.search(text) is not None


def mask_text(text: str) -> str:
    """Mask every mainland mobile number that appears anywhere in a text."""
    return _ANY_MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def sms_length(text: str) -> int:
    """Length as the carrier bills it: UTF-16 code units, so an emoji counts twice."""
    return len(text.encode("utf-16-le")) // 2


def segment_count(text: str, signature: str = "") -> int:
    """Billed segments of a text once the gateway appends the approved signature."""
    length = sms_length(text) + sms_length(signature)
    if length <= SINGLE_SEGMENT_CHARS:
        return 1
    return math.ceil(length / MULTI_SEGMENT_CHARS)


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What one text to one number is expected to cost before the gateway says so."""

    segments: int
    cost: Decimal


def estimate(text: str, signature: str, price_per_segment: Decimal) -> CostEstimate:
    """Segments and cost of sending one text to one number."""
    segments = segment_count(text, signature)
    return CostEstimate(segments=segments, cost=price_per_segment * segments)
