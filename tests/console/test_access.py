"""Who may see and do what: sessions, CSRF, roles, the audit log, cookies behind proxies."""

from __future__ import annotations

import aiohttp

from bridge.config.console import Role
from bridge.console.auth import COOKIE, LOGIN_COOKIE, csrf_token, seal
from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory
from tests.console.conftest import base
from tests.console.helpers import PASSWORDS, SECRET, TOKEN, client, config, csrf_of, login, rows

PAGES = ("messages", "incidents", "queue", "conversations", "gateway", "rules", "config", "audit")


async def audit(daemon: Daemon) -> list[tuple[str, str, str, str]]:
    return await rows(daemon, "SELECT person, role, action, target FROM console_audit ORDER BY id")


async def test_pages_need_a_session(daemon: Daemon) -> None:
    async with client() as http:
        for page in PAGES:
            async with http.get(f"{base(daemon)}/{page}", allow_redirects=False) as answer:
                assert answer.status == 303
                assert answer.headers["Location"] == f"/console/login?next=/console/{page}"
        async with http.post(f"{base(daemon)}/incidents/1/ack", allow_redirects=False) as answer:
            assert answer.status == 401
        async with http.get(f"{base(daemon)}/events") as answer:
            assert answer.status == 200  # the login page, after the redirect
            assert "Log in" in await answer.text()


async def test_login_sets_a_strict_http_only_cookie_and_is_audited(daemon: Daemon) -> None:
    async with client() as http:
        assert await login(http, base(daemon), "alice", "wrong") == 401
        assert await login(http, base(daemon), "nobody", "wrong") == 401
        async with http.get(f"{base(daemon)}/login") as page:
            token = csrf_of(await page.text())
        form = {"csrf": token, "user": "alice", "password": PASSWORDS["alice"], "next": "/x"}
        async with http.post(f"{base(daemon)}/login", data=form, allow_redirects=False) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/console/messages"  # never off the console
            cookie = answer.cookies[COOKIE]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/console"
        assert not cookie["secure"]  # plain http, no trusted proxy
        async with http.get(f"{base(daemon)}/messages") as page:
            assert page.status == 200
            assert "alice (operator)" in await page.text()
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert await audit(daemon) == [
        ("alice", "", "login_failed", ""),
        ("nobody", "", "login_failed", ""),
        ("alice", "operator", "login", ""),
    ]


async def test_a_token_logs_in(daemon: Daemon) -> None:
    async with client() as http:
        assert await login(http, base(daemon), "bot", TOKEN[:-1]) == 401
        assert await login(http, base(daemon), "bot", TOKEN) == 303
        async with http.get(f"{base(daemon)}/queue") as page:
            assert "bot (viewer)" in await page.text()


async def test_login_form_needs_its_own_token(daemon: Daemon) -> None:
    async with client() as http:
        form = {"csrf": "forged", "user": "alice", "password": PASSWORDS["alice"]}
        async with http.post(f"{base(daemon)}/login", data=form, allow_redirects=False) as answer:
            assert answer.status == 403
            assert COOKIE not in answer.cookies


async def test_a_forged_or_missing_csrf_token_is_refused(
    daemon: Daemon, operator: aiohttp.ClientSession
) -> None:
    url = f"{base(daemon)}/jobs/1/cancel"
    for form in ({}, {"csrf": "forged"}, {"csrf": csrf_token(b"another secret", "n")}):
        async with operator.post(url, data=form, allow_redirects=False) as answer:
            assert answer.status == 403
            assert "CSRF" in await answer.text()
    assert [row[2] for row in await audit(daemon)] == ["login"]  # nothing acted


async def test_any_instance_with_the_secret_accepts_the_cookie(daemon: Daemon) -> None:
    cookie = seal(SECRET.encode(), "victor", Role.OPERATOR, 2**40)
    async with (
        client(cookies={COOKIE: cookie}) as http,
        http.get(f"{base(daemon)}/messages") as page,
    ):
        # The role is the config's, not the cookie's: victor is a viewer.
        assert "victor (viewer)" in await page.text()
    forged = seal(b"not the secret but just as long as it", "alice", Role.OPERATOR, 2**40)
    expired = seal(SECRET.encode(), "alice", Role.OPERATOR, 1.0)
    for value in (forged, expired, cookie + "x"):
        async with (
            client(cookies={COOKIE: value}) as http,
            http.get(f"{base(daemon)}/messages", allow_redirects=False) as page,
        ):
            assert page.status == 303


async def test_viewers_may_look_not_act(daemon: Daemon, viewer: aiohttp.ClientSession) -> None:
    async with viewer.get(f"{base(daemon)}/queue") as page:
        token = csrf_of(await page.text())
    for path in ("incidents/1/ack", "jobs/1/cancel", "phones"):
        async with viewer.post(
            f"{base(daemon)}/{path}", data={"csrf": token}, allow_redirects=False
        ) as answer:
            assert answer.status == 403
            assert "operator role" in await answer.text()


async def test_logout_ends_the_session(daemon: Daemon, operator: aiohttp.ClientSession) -> None:
    async with operator.get(f"{base(daemon)}/messages") as page:
        token = csrf_of(await page.text())
    async with operator.post(f"{base(daemon)}/logout", data={"csrf": token}) as answer:
        assert "Log in" in await answer.text()
    async with operator.get(f"{base(daemon)}/messages", allow_redirects=False) as answer:
        assert answer.status == 303
    assert [row[2] for row in await audit(daemon)] == ["login", "logout"]


async def test_forwarded_headers_are_believed_only_from_trusted_proxies(
    smsbridge_daemon: DaemonFactory,
) -> None:
    daemon = await smsbridge_daemon(config(trusted='["127.0.0.0/8"]'))
    untrusted = await smsbridge_daemon(config(trusted='["10.0.0.0/8"]'))
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9, 127.0.0.1"}
    cases = ((daemon, True, "203.0.113.9"), (untrusted, False, "127.0.0.1"))
    for running, secure, remote in cases:
        async with client(headers=headers) as http:
            async with http.get(f"{base(running)}/login") as page:
                token = csrf_of(await page.text())
                nonce = page.cookies[LOGIN_COOKIE]
                assert bool(nonce["secure"]) is secure
            form = {"csrf": token, "user": "alice", "password": PASSWORDS["alice"]}
            # Sent by hand: the jar keeps a Secure cookie from going back over plain http.
            async with http.post(
                f"{base(running)}/login",
                data=form,
                allow_redirects=False,
                headers={"Cookie": f"{LOGIN_COOKIE}={nonce.value}"},
            ) as answer:
                assert answer.status == 303
                assert bool(answer.cookies[COOKIE]["secure"]) is secure
        assert (await rows(running, "SELECT remote FROM console_audit"))[0][0] == remote
