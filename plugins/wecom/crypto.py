"""WeCom's callback crypto (加解密方案): SHA-1 msg_signature, AES-256-CBC with 32-byte padding."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_BLOCK = 16  # AES's block; the IV is the key's first block
PAD_BLOCK = 32  # WeCom pads PKCS#7-style to 32 bytes, not AES's 16: pad values 1..32
RANDOM = 16  # random bytes before the length
KEY_CHARS = 43  # an EncodingAESKey: 43 base64 characters, 32 bytes with the missing "="


class CallbackError(ValueError):
    """A callback is refused; `reason` is a short log value (never a secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DecryptError(CallbackError):
    """The ciphertext is not base64 of AES-256-CBC under our key, or not for our corp."""


def aes_key(encoding_aes_key: str) -> bytes:
    """The AES key: base64decode(EncodingAESKey + "="), which must be 32 bytes."""
    if len(encoding_aes_key) != KEY_CHARS:
        raise ValueError(f"expected the {KEY_CHARS}-character EncodingAESKey")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the EncodingAESKey is not base64 (A-Z a-z 0-9 + /)") from None
    if len(key) != 32:  # pragma: no cover - 43 base64 characters and "=" always decode to 32
        raise ValueError("the EncodingAESKey does not decode to 32 bytes")
    return key


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """Hex SHA-1 of the four values sorted (as strings) and joined with nothing."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt]))
    return hashlib.sha1(joined.encode("utf-8", "surrogatepass")).hexdigest()  # noqa: S324


def check_request(
    token: str,
    timestamp: str,
    nonce: str,
    signature: str,
    encrypt: str,
    *,
    window: float,
    now: float | None = None,
) -> str:
    """Why a callback is refused, or "" when its signature and timestamp are good.

    WeCom documents no replay window; the input enforces its own (protocols.md §6.6).
    Reasons are log values, never secrets.
    """
    if not timestamp or not nonce or not signature or not encrypt:
        return "missing"
    # Length first: int() of thousands of digits raises (and would be slow anyway).
    if len(timestamp) > 16 or not timestamp.isascii() or not timestamp.isdigit():
        return "malformed_timestamp"
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > window:
        return "stale_timestamp"
    expected = msg_signature(token, timestamp, nonce, encrypt).encode()
    if not hmac.compare_digest(expected, signature.lower().encode("utf-8", "surrogatepass")):
        return "bad_signature"
    return ""


def decrypt(key: bytes, encrypt: str, receive_id: str) -> bytes:
    """The message inside `encrypt`: random(16) + length(4, big-endian) + msg + receive id.

    The receive id must be `receive_id` (the corp id): a message for another corp, encrypted
    with the same key, is refused. Raises DecryptError, and nothing else, on any bad input.
    """
    try:
        raw = base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("undecryptable") from None
    if not raw or len(raw) % PAD_BLOCK:
        # Padded to 32 bytes: anything else was not made by WeCom's encryptor.
        raise DecryptError("undecryptable")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:AES_BLOCK])).decryptor()
    padded = decryptor.update(raw) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= PAD_BLOCK or padded[-pad:] != bytes([pad]) * pad:
        # Almost always another EncodingAESKey: the last block decrypts to noise.
        raise DecryptError("undecryptable")
    plain = padded[:-pad]
    if len(plain) < RANDOM + 4:
        raise DecryptError("undecryptable")
    length = int.from_bytes(plain[RANDOM : RANDOM + 4], "big")
    end = RANDOM + 4 + length
    if end > len(plain):
        raise DecryptError("undecryptable")
    if not hmac.compare_digest(plain[end:], receive_id.encode()):
        raise DecryptError("wrong_receiver")
    return plain[RANDOM + 4 : end]


def open_callback(
    token: str,
    key: bytes,
    receive_id: str,
    *,
    timestamp: str,
    nonce: str,
    signature: str,
    encrypt: str,
    window: float,
    now: float | None = None,
) -> bytes:
    """The message of a signed, encrypted callback (or the echostr of a URL check).

    CBC alone does not notice an altered byte (the block it garbles may be the random prefix);
    the signature over the ciphertext does. Raises CallbackError with the reason.
    """
    reason = check_request(token, timestamp, nonce, signature, encrypt, window=window, now=now)
    if reason:
        raise CallbackError(reason)
    return decrypt(key, encrypt, receive_id)
