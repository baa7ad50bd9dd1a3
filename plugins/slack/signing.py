"""Slack's request signing, v0: HMAC-SHA256 over "v0:<timestamp>:<raw body>", 5-minute window."""

from __future__ import annotations

import hashlib
import hmac
import time

VERSION = "v0"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
TOLERANCE = 5 * 60  # seconds, as Slack's SDK enforces (protocols.md §3.1)


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The X-Slack-Signature value Slack sends for `body` at `timestamp`."""
    message = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def check(
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE,
) -> str:
    """Why the request is refused ('' when it is Slack's): missing, bad_timestamp, stale or
    bad_signature.

    The window bounds how long a captured request can be replayed; inputs dedupe what is
    replayed inside it.
    """
    if not timestamp or not signature:
        return "missing"
    # At most 12 digits: int() of a huge digit string is slow, and no real clock is that far.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "bad_timestamp"
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return "stale"
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        return "bad_signature"
    return ""
