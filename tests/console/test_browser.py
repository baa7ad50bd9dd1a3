"""The console in a real headless Chromium (Debian's, driven by Playwright) against a real
daemon process: log in, watch an alert's delivery arrive by live update, acknowledge an
incident, run a dry run, be refused without a session or with a forged CSRF token, and stop
promptly on SIGTERM with a live page open. Each page's screenshot is kept as an artifact."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.console.helpers import PASSWORDS, config, notification

CHROMIUM = os.environ.get("SMSBRIDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("SMSBRIDGE_ARTIFACTS", "test-artifacts")) / "console"
PAGES = ("messages", "incidents", "queue", "conversations", "gateway", "rules", "config", "audit")
# Pages come and go quickly on a shared machine, but never this slowly.
WAIT_MS = 15_000

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extras install it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed"),
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"no chromium at {CHROMIUM} (`./dev setup` installs Debian's where it may)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the session's browser tests (all in this module). Module-scoped, not
    session-scoped: Playwright's sync API runs an event loop of its own while it lives, and the
    asyncio tests after this module need the thread's loop free again."""
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    url: str  # the webhooks' base
    console: str  # the console's base, .../console

    def post_alert(self, body: dict[str, Any]) -> int:
        request = urllib.request.Request(  # noqa: S310 - an http:// URL of our own daemon
            f"{self.url}/hooks/am",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - our daemon
            return int(answer.status)


def _started(log: Path, process: subprocess.Popen[bytes]) -> tuple[str, str]:
    """The daemon's and the console's URLs, from its JSON log lines."""
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(urls) < 2:
        assert process.poll() is None, f"the daemon exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"the daemon did not start: {log.read_text()}"
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") in ("daemon_started", "console_started"):
                urls[record["event"]] = record["url"]
        time.sleep(0.05)
    return urls["daemon_started"], urls["console_started"]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Running]:
    """`smsbridge run` in a process of its own, on free ports, its reports due at once; its
    log goes to a file (a pipe nobody reads would block it), shown when a test fails."""
    text = config(
        extra="""
server: {listen: "127.0.0.1:0", shutdown_timeout: 30s}
store: {path: store.sqlite3}
simulator: {report_delay: 0s}
"""
    ).replace("polling: {replies: 1h, reports: 1h, balance: 1h}", "polling: {reports: 1s}")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    log = tmp_path / "daemon.log"
    smsbridge = Path(sys.executable).parent / "smsbridge"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(smsbridge), "run", "-c", str(path)], cwd=tmp_path, stdout=sink, stderr=sink
        )
    try:
        url, console = _started(log, process)
        yield Running(process, url, console)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        problems = [line for line in log.read_text().splitlines() if '"level": "error"' in line]
        assert not problems, "\n".join(problems)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def logged_in(browser: Browser, daemon: Running, user: str = "alice") -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{daemon.console}/messages")
    expect(page).to_have_url(f"{daemon.console}/login?next=/console/messages")
    shot(page, "login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{daemon.console}/messages")
    expect(page.locator("header .who span")).to_have_text(f"{user} (operator)")
    return page


def test_log_in_and_see_every_page(browser: Browser, daemon: Running) -> None:
    page = logged_in(browser, daemon)
    assert daemon.post_alert(notification("firing", "f1")) == 200
    for name in PAGES:
        page.goto(f"{daemon.console}/{name}")
        expect(page.locator("h1")).to_be_visible()
        assert "internal error" not in page.content()
        shot(page, name)
    page.goto(f"{daemon.console}/phones")
    expect(page.locator("h1")).to_have_text("Simulated phones")
    shot(page, "phones")


def test_an_alert_appears_with_its_delivery_state_by_live_update(
    browser: Browser, daemon: Running
) -> None:
    page = logged_in(browser, daemon)
    expect(page.locator("main")).to_contain_text("No messages.")
    assert daemon.post_alert(notification("firing", "f2", severity="warning")) == 200
    # No reload: the page is told of the commits and refreshes its own content.
    row = page.locator("#messages tbody tr").first
    expect(row.locator(".state")).to_have_text("delivered", timeout=WAIT_MS)
    expect(row).to_contain_text("151****0087")
    expect(row).to_contain_text("DiskFull")
    shot(page, "messages-delivered")
    row.locator("a").first.click()
    expect(page.locator(".timeline")).to_contain_text("delivery report: delivered")
    shot(page, "message-timeline")


def test_acknowledge_an_incident_from_its_page(browser: Browser, daemon: Running) -> None:
    page = logged_in(browser, daemon)
    assert daemon.post_alert(notification("firing", "f3")) == 200
    page.goto(f"{daemon.console}/incidents")
    link = page.locator("#incidents a", has_text="#1")
    expect(link).to_be_visible()
    link.click()
    expect(page.locator("#incident-state")).to_have_text("triggered")
    page.once("dialog", lambda dialog: dialog.accept())  # the confirm() before acting
    page.click("#ack")
    expect(page.locator("#incident-state")).to_have_text("acknowledged")
    expect(page.locator(".note")).to_contain_text("acknowledged #1 DiskFull")
    shot(page, "incident-acknowledged")
    page.goto(f"{daemon.console}/audit")
    expect(page.locator("#audit")).to_contain_text("acknowledge")


def test_rule_dry_run(browser: Browser, daemon: Running) -> None:
    page = logged_in(browser, daemon)
    page.goto(f"{daemon.console}/rules")
    event = {
        "kind": "alert",
        "source": "am",
        "labels": {"alertname": "DiskFull", "severity": "critical"},
        "text": "disk full",
    }
    page.fill("textarea[name=event]", json.dumps(event))
    page.click("#dry-run")
    report = page.locator("#report")
    expect(report).to_contain_text("Page through policy ops")
    expect(report).to_contain_text("Alice (151****0086, alice)")
    expect(report).to_contain_text("Bob (151****0087, bob)")
    shot(page, "rules-dry-run")


def test_refused_without_a_session_and_with_a_forged_csrf_token(
    browser: Browser, daemon: Running
) -> None:
    stranger = browser.new_context().new_page()
    stranger.goto(f"{daemon.console}/queue")
    expect(stranger).to_have_url(f"{daemon.console}/login?next=/console/queue")
    answer = stranger.request.post(f"{daemon.console}/incidents/1/ack", max_redirects=0)
    assert answer.status == 401
    page = logged_in(browser, daemon)
    assert daemon.post_alert(notification("firing", "f4")) == 200
    page.goto(f"{daemon.console}/incidents")
    page.locator("#incidents a", has_text="#1").click()  # once the live update shows it
    expect(page.locator("#incident-state")).to_have_text("triggered")
    page.evaluate(
        "document.querySelectorAll('input[name=csrf]').forEach(i => { i.value = 'forged'; })"
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#ack")
    expect(page.locator(".problem")).to_contain_text("CSRF token is missing or wrong")
    shot(page, "forged-csrf")
    page.goto(f"{daemon.console}/incidents/1")
    expect(page.locator("#incident-state")).to_have_text("triggered")


def test_sigterm_ends_open_live_pages_and_the_daemon_stops_promptly(
    browser: Browser, daemon: Running
) -> None:
    page = logged_in(browser, daemon)
    page.goto(f"{daemon.console}/incidents")
    page.wait_for_function("document.body.dataset.live === '1'")
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(20) == 0
    # shutdown_timeout is 30 s: a stream left open would have held the stop that long.
    assert time.monotonic() - started < 10
