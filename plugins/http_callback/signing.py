"""The callback signature: `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>`, and its check."""

from __future__ import annotations

import hashlib
import hmac
import time

PREFIX = "sha256="
TOLERANCE = 300.0  # seconds a receiver accepts between the timestamp and its own clock


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Smsbridge-Signature value for a body sent at `timestamp` (unix seconds)."""
    message = str(timestamp).encode() + b"." + body
    return PREFIX + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE,
) -> bool:
    """What a receiver does with the two headers and the raw body, before parsing it.

    A missing or non-numeric timestamp, one outside the window, or a signature that differs in
    any way is refused; the window bounds how long a captured request can be replayed.
    """
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, int(timestamp), body).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))
