"""Password hashes, session cookies, CSRF tokens and the `console:` section, piece by piece."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.config.console import ConsoleConfig, PasswordHash, Role
from bridge.console.auth import check_login, csrf_ok, csrf_token, seal, unseal
from tests.console.helpers import SECRET, cheap_hash

KEY = SECRET.encode()


def _config(**users: dict[str, str]) -> ConsoleConfig:
    return ConsoleConfig.model_validate({"secret": SECRET, "users": users})


@settings(max_examples=30, deadline=None)
@given(password=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_a_hash_verifies_its_password_only(password: str, other: str) -> None:
    salt = hashlib.sha256(password.encode()).digest()[:16]
    digest = hashlib.scrypt(password.encode(), salt=salt, n=16, r=8, p=1, dklen=32)
    text = PasswordHash(16, 8, 1, salt, digest).text()
    parsed = PasswordHash.parse(text)
    assert parsed.text() == text
    assert parsed.verify(password)
    assert parsed.verify(other) is (other == password)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain-password",
        "bcrypt$16$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
        "scrypt$15$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",  # N not a power of two
        "scrypt$16$8$1$not base64!$AAAAAAAAAAAAAAAAAAAAAA==",
        "scrypt$16$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA==",  # salt too short
    ],
)
def test_malformed_hashes_are_refused_by_the_config(text: str) -> None:
    with pytest.raises(ValidationError):
        _config(alice={"password_hash": text})


def test_the_section_wants_one_secret_and_one_credential_each() -> None:
    hashed = cheap_hash("a password")
    with pytest.raises(ValidationError, match="exactly one of password_hash or token"):
        _config(alice={"password_hash": hashed, "token": "t" * 20})
    with pytest.raises(ValidationError, match="at least 32"):
        ConsoleConfig.model_validate({"secret": "short", "users": {"a": {"token": "x" * 9}}})
    with pytest.raises(ValidationError, match="exactly one of secret"):
        ConsoleConfig.model_validate({"users": {"a": {"token": "x" * 9}}})
    with pytest.raises(ValidationError, match="not an IP address"):
        ConsoleConfig.model_validate(
            {"secret": SECRET, "users": {"a": {"token": "x"}}, "trusted_proxies": ["proxy"]}
        )
    config = _config(alice={"password_hash": hashed})
    assert config.host == "127.0.0.1"  # loopback unless told: the webhook port may be public
    assert config.users["alice"].role is Role.VIEWER


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    config = ConsoleConfig.model_validate(
        {"secret_file": str(path), "users": {"a": {"token": "x"}}}
    )
    assert config.signing_key() == KEY


def test_logins() -> None:
    config = _config(alice={"password_hash": cheap_hash("right one"), "role": "operator"})
    assert check_login(config, "alice", "right one") is Role.OPERATOR
    assert check_login(config, "alice", "wrong one") is None
    assert check_login(config, "mallory", "right one") is None


@given(user=st.text(min_size=1, max_size=20), expires=st.floats(min_value=2, max_value=2e9))
def test_a_session_round_trips_and_a_changed_byte_breaks_it(user: str, expires: float) -> None:
    config = _config(**{user: {"token": "x" * 10, "role": "operator"}})
    cookie = seal(KEY, user, Role.OPERATOR, expires)
    session = unseal(KEY, cookie, config, 1.0)
    assert session is not None
    assert (session.user, session.role, session.expires) == (user, Role.OPERATOR, expires)
    assert unseal(KEY, cookie, config, expires) is None  # expired
    assert unseal(b"x" * 40, cookie, config, 1.0) is None
    flipped = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
    assert unseal(KEY, flipped, config, 1.0) is None
    assert csrf_ok(KEY, session.nonce, csrf_token(KEY, session.nonce))
    assert not csrf_ok(KEY, session.nonce, csrf_token(KEY, session.nonce + "x"))
    assert not csrf_ok(KEY, session.nonce, "")


def test_console_hash_prints_a_hash_the_config_takes() -> None:
    smsbridge = Path(sys.executable).parent / "smsbridge"
    done = subprocess.run(
        [str(smsbridge), "console-hash"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout.strip()
    assert PasswordHash.parse(text).verify("correct horse battery")
    assert _config(alice={"password_hash": text}).users["alice"].password_hash == text
    short = subprocess.run(
        [str(smsbridge), "console-hash"], input="short\n", capture_output=True, text=True
    )
    assert short.returncode == 2
    assert "at least 8" in short.stderr
