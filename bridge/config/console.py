"""The `console:` section: where the web console listens, who may log in, and how it signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import ConfigModel
from bridge.config.types import PositiveDuration, Secret, SecretFile

DEFAULT_CONSOLE_LISTEN = "127.0.0.1:9681"
# scrypt's cost: 2**15 with r=8 takes ~32 MiB and ~0.1 s, the figure RFC 7914 suggests for
# interactive logins. Kept in the hash, so raising it later keeps old hashes valid.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_SECRET = 32  # characters of a session-signing secret


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A password hashed with the standard library's scrypt: `scrypt$N$r$p$salt$hash` (base64)."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def make(cls, password: str) -> PasswordHash:
        salt = secrets.token_bytes(16)
        digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return cls(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest)

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
            raise ValueError("expected scrypt$N$r$p$salt$hash, as `smsbridge console-hash` prints")
        n, r, p = (int(part) for part in parts[1:4])
        if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError("scrypt parameters out of range (N a power of 2 up to 2**20)")
        try:
            salt, digest = (base64.b64decode(part, validate=True) for part in parts[4:])
        except ValueError:
            raise ValueError("the salt and hash must be base64") from None
        if len(salt) < 8 or len(digest) < 16:
            raise ValueError("the salt or hash is too short")
        return cls(n, r, p, salt, digest)

    def text(self) -> str:
        salt, digest = (base64.b64encode(part).decode() for part in (self.salt, self.digest))
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"

    def verify(self, password: str) -> bool:
        found = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(found, self.digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=length
    )


class Role(StrEnum):
    VIEWER = "viewer"  # reads every page, runs dry runs
    OPERATOR = "operator"  # also acknowledges, closes, retries, cancels, releases, replies


class ConsoleUser(ConfigModel):
    """One person (or script) who may log in: a password hash, or a token."""

    role: Role = Role.VIEWER
    password_hash: str | None = None  # from `smsbridge console-hash`
    token: Secret | None = None  # e.g. ${CONSOLE_TOKEN}; compared in constant time

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None:
            PasswordHash.parse(value)
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> ConsoleUser:
        if (self.password_hash is None) == (self.token is None):
            raise ValueError("set exactly one of password_hash or token")
        return self


class ConsoleConfig(ConfigModel):
    """The web console at /console on a listener of its own (the webhook port is often public)."""

    listen: str = DEFAULT_CONSOLE_LISTEN
    secret: SecretStr | None = None  # signs session cookies, e.g. ${CONSOLE_SECRET}
    secret_file: SecretFile | None = None  # or read from a file (a systemd credential)
    users: Annotated[dict[str, ConsoleUser], Field(min_length=1)]
    session_ttl: PositiveDuration = timedelta(hours=12)
    # Proxies whose X-Forwarded-For / -Proto are believed (addresses or networks).
    trusted_proxies: list[str] = Field(default_factory=list)
    live_clients: Annotated[int, Field(ge=1, le=1000)] = 32  # open live-update streams at most

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port, e.g. 127.0.0.1:9681 (port 0 picks a free one)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> ConsoleConfig:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("set exactly one of secret (e.g. ${CONSOLE_SECRET}) or secret_file")
        if self.secret is not None and len(self.secret.get_secret_value()) < MIN_SECRET:
            raise ValueError(f"the secret must be at least {MIN_SECRET} characters")
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def signing_key(self) -> bytes:
        """The session-signing secret (read from its file each time the console starts)."""
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        assert self.secret_file is not None  # the model requires one of them
        text = self.secret_file.read_text(encoding="utf-8").strip()
        if len(text) < MIN_SECRET:
            raise ValueError(f"{self.secret_file}: the secret must be at least {MIN_SECRET} chars")
        return text.encode()
