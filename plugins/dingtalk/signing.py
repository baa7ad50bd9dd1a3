"""DingTalk's robot signature (protocols.md §3.3): base64 HMAC-SHA256 of "<ms>\\n<secret>"."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse

# DingTalk accepts a signature within one hour of its clock, both ways (protocols.md §3.3).
WINDOW = 3600.0


def sign(secret: str, timestamp: str | int) -> str:
    """The signature for `timestamp` (unix milliseconds): the key is the secret, and the message
    is the timestamp and the secret on two lines. The same for the inbound `sign` header and the
    custom robot's `sign` query parameter (which is URL-encoded on top)."""
    message = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check(
    secret: str, timestamp: str, signature: str, *, now: float | None = None, window: float = WINDOW
) -> str:
    """Why the `timestamp` and `sign` headers are refused, or "" when they are valid.

    The timestamp must be plain digits (milliseconds) within `window` seconds of `now`; the
    signature is compared in constant time. The reasons are log values, never secrets.
    """
    if not timestamp or not signature:
        return "missing"
    # Length first: int() of thousands of digits raises (and would be slow anyway).
    if len(timestamp) > 16 or not timestamp.isascii() or not timestamp.isdigit():
        return "malformed_timestamp"
    current = time.time() if now is None else now
    if abs(current * 1000 - int(timestamp)) > window * 1000:
        return "stale_timestamp"
    expected = sign(secret, timestamp).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass")):
        return "bad_signature"
    return ""


def signed_query(access_token: str, secret: str | None, timestamp: int) -> str:
    """The custom robot's query string: `access_token`, and with a secret `timestamp` and the
    URL-encoded `sign` (base64 has + / = which must not reach DingTalk raw)."""
    query = "access_token=" + urllib.parse.quote_plus(access_token)
    if secret is not None:
        query += f"&timestamp={timestamp}&sign=" + urllib.parse.quote_plus(sign(secret, timestamp))
    return query
