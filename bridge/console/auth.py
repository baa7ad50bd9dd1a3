"""Who is asking: signed session cookies (any instance with the secret accepts them), CSRF tokens
tied to the session, logins checked against the config, and the client behind trusted proxies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from bridge.config.console import ConsoleConfig, PasswordHash, Role

COOKIE = "smsbridge_console"
LOGIN_COOKIE = "smsbridge_console_login"  # a nonce the login form's CSRF token is tied to
PATH = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: Role
    nonce: str  # ties the CSRF token to this session
    expires: float

    @property
    def operator(self) -> bool:
        return self.role is Role.OPERATOR


@dataclass(frozen=True, slots=True)
class Client:
    remote: str  # the address that asked (the forwarded one, behind a trusted proxy)
    https: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, purpose: str, payload: str) -> str:
    return _b64(hmac.new(key, f"{purpose}|{payload}".encode(), hashlib.sha256).digest())


def seal(key: bytes, user: str, role: Role, expires: float) -> str:
    """A session cookie's value: its fields and their signature."""
    body = {"u": user, "r": role.value, "n": secrets.token_urlsafe(16), "e": expires}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(key, 'session', payload)}"


def unseal(key: bytes, value: str, config: ConsoleConfig, now: float) -> Session | None:
    """The session a cookie carries, if its signature holds, it has not expired and its user
    still exists (the role is the config's now: a reload that demotes someone takes effect)."""
    payload, _, signature = value.partition(".")
    if not hmac.compare_digest(signature.encode(), _sign(key, "session", payload).encode()):
        return None
    try:
        body = json.loads(_unb64(payload))
        user, nonce, expires = str(body["u"]), str(body["n"]), float(body["e"])
    except (ValueError, KeyError, TypeError):
        return None
    found = config.users.get(user)
    if found is None or expires <= now:
        return None
    return Session(user, found.role, nonce, expires)


def csrf_token(key: bytes, nonce: str) -> str:
    return _sign(key, "csrf", nonce)


def csrf_ok(key: bytes, nonce: str, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), csrf_token(key, nonce).encode())


def check_login(config: ConsoleConfig, user: str, secret: str) -> Role | None:
    """The user's role if `secret` is their password (or token); None otherwise."""
    found = config.users.get(user)
    if found is None:
        # The same scrypt cost for a name that does not exist: timing tells no names apart.
        PasswordHash.make(secret)
        return None
    if found.token is not None:
        expected = found.token.get_secret_value().encode()
        return found.role if hmac.compare_digest(secret.encode(), expected) else None
    assert found.password_hash is not None  # the config model requires one of them
    return found.role if PasswordHash.parse(found.password_hash).verify(secret) else None


def networks(config: ConsoleConfig) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in config.trusted_proxies)


def _trusted(
    address: str, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client(
    request: web.Request, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> Client:
    """The client, believing X-Forwarded-For / -Proto only when a trusted proxy sent them: the
    address is the nearest one in X-Forwarded-For that is not itself a trusted proxy."""
    remote = request.remote or ""
    https = request.secure
    if not _trusted(remote, trusted):
        return Client(remote, https)
    forwarded = [
        part.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for part in header.split(",")
        if part.strip()
    ]
    for address in reversed(forwarded):
        remote = address
        if not _trusted(address, trusted):
            break
    proto = request.headers.get("X-Forwarded-Proto", "")
    if proto:
        https = proto.split(",")[0].strip().lower() == "https"
    return Client(remote, https)


def set_cookie(
    response: web.StreamResponse, name: str, value: str, *, https: bool, age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=https,
    )
