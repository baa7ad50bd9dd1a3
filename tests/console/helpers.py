"""What the console tests share: a config with a console and paging, logins, form tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bridge.config.console import PasswordHash
from bridge.plugins.c123.simulator import DEFAULT_ACCOUNT, DEFAULT_AUTHKEY
from bridge.runtime.daemon import Daemon

A, B = "15102110086", "15102110087"
SECRET = "console-test-secret-0123456789-abcdefghij"
TOKEN = "bot-token-0123456789"
PASSWORDS = {"alice": "alice-password", "victor": "victor-password"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def cheap_hash(password: str) -> str:
    """A real scrypt hash at a low cost, so tests log in quickly."""
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=16, r=8, p=1, dklen=32)
    return PasswordHash(16, 8, 1, salt, digest).text()


def config(
    *,
    live_clients: int = 4,
    trusted: str = "[]",
    extra: str = "",
    store_url: str = "",
    gateway: str = "",
) -> str:
    """A daemon's config; with `store_url`, on that PostgreSQL database (else a SQLite file);
    with `gateway`, sending to that simulator (else one of its own)."""
    head = f'store: {{url: "{store_url}"}}\n' if store_url else ""
    if gateway:
        head += (
            f"gateway: {{base_url: {gateway}, account: {DEFAULT_ACCOUNT}, "
            f"authkey: {DEFAULT_AUTHKEY}, rate_limit: null}}\n"
        )
    return f"""{head}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts:
  alice: {{number: "{A}", name: Alice}}
  bob: {{number: "{B}", name: Bob}}
oncall:
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: 1h}}
      report_timeout: 1h
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
  - name: warnings
    match: {{kind: alert}}
    sms: {{to: [bob]}}
console:
  listen: 127.0.0.1:0
  secret: {SECRET}
  live_clients: {live_clients}
  trusted_proxies: {trusted}
  users:
    alice: {{role: operator, password_hash: "{cheap_hash(PASSWORDS["alice"])}"}}
    victor: {{role: viewer, password_hash: "{cheap_hash(PASSWORDS["victor"])}"}}
    bot: {{role: viewer, token: {TOKEN}}}
{extra}"""


async def rows(daemon: Daemon, sql: str) -> list[tuple[Any, ...]]:
    """What `sql` reads from the daemon's store, whichever backend it is on."""
    return await daemon.store.read(
        lambda conn: [tuple(row) for row in conn.execute(sql).fetchall()]
    )


def notification(status: str, fingerprint: str, severity: str = "critical") -> dict[str, Any]:
    """An Alertmanager v4 notification of one DiskFull alert."""
    labels = {"alertname": "DiskFull", "severity": severity, "instance": "db1"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "status": status,
        "receiver": "sms",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "Disk /var is 97% full"},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "Disk /var is 97% full"},
                "startsAt": "2026-11-25T00:00:00Z",
                "endsAt": "2026-11-25T01:00:00Z" if status == "resolved" else "",
                "fingerprint": fingerprint,
            }
        ],
    }


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


async def login(http: aiohttp.ClientSession, base: str, user: str, password: str) -> int:
    """Log in through the form as a browser would; returns the answer's status."""
    async with http.get(f"{base}/login") as page:
        token = csrf_of(await page.text())
    form = {"csrf": token, "user": user, "password": password, "next": "/console/messages"}
    async with http.post(f"{base}/login", data=form, allow_redirects=False) as answer:
        return answer.status


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll a condition with a deadline (the store has no change event to await)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def basic(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def client(**options: Any) -> aiohttp.ClientSession:
    """A client that keeps cookies of 127.0.0.1 (aiohttp's default jar refuses IP hosts)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), **options)
