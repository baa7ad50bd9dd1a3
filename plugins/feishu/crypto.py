"""Feishu's crypto (protocols.md §3.4): AES-256-CBC bodies, event signatures, webhook signs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16  # AES block size in bytes; the IV is the first block


class DecryptError(ValueError):
    """The `encrypt` field is not base64 of IV + AES-256-CBC ciphertext under our key."""


def decrypt(encrypt_key: str, data: str) -> bytes:
    """The plaintext of an `{"encrypt": ...}` body: key = SHA-256(encrypt_key), IV = the first
    16 bytes of the base64-decoded data, PKCS#7 padding. Raises DecryptError."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("not base64") from None
    if len(raw) < 2 * BLOCK or len(raw) % BLOCK:
        raise DecryptError("not a whole number of AES blocks")
    key = hashlib.sha256(encrypt_key.encode()).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:BLOCK])).decryptor()
    padded = decryptor.update(raw[BLOCK:]) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # Almost always a different encrypt_key: the last block decrypts to noise.
        raise DecryptError("bad padding") from None


def event_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """X-Lark-Signature: hex SHA-256 (plain, not HMAC) of timestamp + nonce + key + raw body."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def check_event(
    encrypt_key: str,
    timestamp: str,
    nonce: str,
    signature: str,
    body: bytes,
    *,
    window: float,
    now: float | None = None,
) -> str:
    """Why a signed event request is refused, or "" when it is valid.

    The timestamp (unix seconds) must be within `window` of `now`: Feishu specifies no window
    (protocols.md §3.8), so the input enforces its own. Reasons are log values, never secrets.
    """
    if not timestamp or not nonce or not signature:
        return "missing"
    # Length first: int() of thousands of digits raises (and would be slow anyway).
    if len(timestamp) > 16 or not timestamp.isascii() or not timestamp.isdigit():
        return "malformed_timestamp"
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > window:
        return "stale_timestamp"
    expected = event_signature(timestamp, nonce, encrypt_key, body).encode()
    if not hmac.compare_digest(expected, signature.lower().encode("utf-8", "surrogatepass")):
        return "bad_signature"
    return ""


def webhook_sign(secret: str, timestamp: int) -> str:
    """The custom bot's `sign` for `timestamp` (unix seconds): "<ts>\\n<secret>" is the HMAC
    *key* and the message is empty (the reverse of DingTalk's), base64, not URL-encoded."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")
