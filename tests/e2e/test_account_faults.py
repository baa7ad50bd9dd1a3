"""Account faults end to end: pages are held, operators told, nothing sent with a bad key, and
everything goes out once the account works again."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bridge.events import Event, EventKind
from bridge.plugins.c123.account import PauseHook
from bridge.plugins.c123.keyfile import write_key
from bridge.plugins.c123.marks import Pause
from bridge.plugins.c123.simulator import DEFAULT_ACCOUNT, DEFAULT_AUTHKEY, Simulator, key_digest
from bridge.runtime.daemon import Daemon
from bridge.testing import CapturingOutput, DaemonFactory

ALICE, BOB = "15102110086", "15102110087"
WRONG = "0123456789ABCDEF0123456789ABCDEF"
SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")


def gateway(url: str, key_file: Path, store: Path, probe: str = "1s") -> str:
    return f"""
store: {{path: {store}}}
gateway:
  base_url: {url}
  account: {DEFAULT_ACCOUNT}
  authkey_file: {key_file}
  rate_limit: null
  probe_interval: {probe}
"""


def daemon_config(
    url: str, key_file: Path, store: Path, *, poll: str = "1h", max_hold: str = "24h"
) -> str:
    return (
        gateway(url, key_file, store)
        + f"""
server: {{shutdown_timeout: 1s}}
polling: {{replies: {poll}, reports: {poll}, balance: {poll}}}
dispatch: {{backoff_max: 1s, max_hold: {max_hold}}}
outputs: {{ops: {{type: capture}}}}
contacts: {{alice: "{ALICE}", bob: "{BOB}"}}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice, bob], repeat_interval: 0s, template: "{{{{ labels.alertname }}}}"}}
  - name: ops
    match: {{kind: system}}
    post: {{to: ops, template: "{{{{ text }}}}"}}
"""
    )


async def page(daemon: Daemon, name: str = "DiskFull") -> None:
    await daemon.processor.run_events(
        [Event(kind=EventKind.ALERT, source="am", labels={"alertname": name}, fingerprint=name)]
    )


async def jobs(daemon: Daemon) -> list[tuple[str, str, str]]:
    def read(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
        rows = conn.execute("SELECT state, code, reason FROM jobs WHERE output = 'sms'")
        return [(row["state"], row["code"], row["reason"]) for row in rows]

    return await daemon.store.read(read)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll a condition that no event announces (the store's rows) until it holds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - rows announce nothing: polling it is
            await asyncio.sleep(0.02)


def paused(daemon: Daemon, reason: str) -> float | None:
    return daemon.metrics.registry.get_sample_value("smsbridge_account_paused", {"reason": reason})


async def held(daemon: Daemon, refused: int = 0) -> bool:
    """Every SMS is held for a paused account, and the gate refused that many calls."""
    states = {(state, code) for state, code, _ in await jobs(daemon)}
    return states == {("pending", "pause_account")} and daemon.client.gate.refused >= refused


async def test_a_locked_account_holds_pages_tells_operators_and_resumes(
    smsbridge_daemon: DaemonFactory,
    simulator: Simulator,
    capture_output: CapturingOutput,
    tmp_path: Path,
) -> None:
    """-6: the pages are held (not failed), operators get a system event and a metric; one
    probe a second; the pages go out once the account is unlocked."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, DEFAULT_AUTHKEY)
    simulator.state.set_flags(DEFAULT_ACCOUNT, account_locked=True)
    daemon = await smsbridge_daemon(
        daemon_config(simulator.url, key_file, tmp_path / "smsbridge.sqlite3")
    )
    await page(daemon)
    await capture_output.wait_for(1)
    assert capture_output.delivered[0].text.startswith("SMS account paused (account_locked)")
    await until(lambda: held(daemon))
    assert paused(daemon, "account_locked") == 1.0
    assert simulator.state.calls["sendOnce"] == 0
    simulator.state.set_flags(DEFAULT_ACCOUNT, account_locked=False)
    await simulator.state.wait_for(lambda s: {m.mobile for m in s.messages} == {ALICE, BOB})
    await until(lambda: _all_sent(daemon))
    assert paused(daemon, "account_locked") is None
    assert len(capture_output.delivered) == 1  # told once, not per message or per probe


async def _all_sent(daemon: Daemon) -> bool:
    return {state for state, _, _ in await jobs(daemon)} == {"sent"}


async def test_a_page_held_past_the_maximum_age_fails_with_the_reason(
    smsbridge_daemon: DaemonFactory, simulator: Simulator, tmp_path: Path
) -> None:
    """A page held longer than dispatch.max_hold fails, and says why."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, DEFAULT_AUTHKEY)
    simulator.state.set_flags(DEFAULT_ACCOUNT, api_disabled=True)
    daemon = await smsbridge_daemon(
        daemon_config(simulator.url, key_file, tmp_path / "s.sqlite3", max_hold="1s")
    )
    await page(daemon)
    await until(lambda: _all_failed(daemon))
    reasons = {reason for _, _, reason in await jobs(daemon)}
    assert reasons == {
        "held for more than 1 s: sendBatch: account paused (api_disabled): the gateway "
        "answered -7: account has API sending disabled; no call made"
    }
    assert simulator.state.messages == []


async def _all_failed(daemon: Daemon) -> bool:
    return {state for state, _, _ in await jobs(daemon)} == {"failed"}


async def test_a_wrong_key_costs_one_call_and_pages_go_out_after_the_fix(
    smsbridge_daemon: DaemonFactory,
    simulator: Simulator,
    capture_output: CapturingOutput,
    tmp_path: Path,
) -> None:
    """With a wrong key in the key file and polls every second, the gateway sees that key
    once: pages are held; the command line and a restarted daemon do not try it again; once
    the file is fixed the pages go out within seconds, without a restart."""
    key_file, store = tmp_path / "c123-authkey", tmp_path / "smsbridge.sqlite3"
    write_key(key_file, WRONG)
    config = daemon_config(simulator.url, key_file, store, poll="1s")
    daemon = await smsbridge_daemon(config)
    await page(daemon)
    await until(lambda: held(daemon, refused=6))  # polls and sends refused meanwhile
    await capture_output.wait_for(1)
    assert capture_output.delivered[0].text.startswith("SMS account paused (wrong_key)")
    assert simulator.state.calls_by_key == {key_digest(WRONG): 1}
    assert not simulator.state.account().key_locked
    await daemon.stop()

    cli_config = tmp_path / "cli.yaml"
    cli_config.write_text(gateway(simulator.url, key_file, store))
    for command in (["send", "--to", ALICE, "hello"], ["balance"]):
        code, output = await run(SMSBRIDGE, *command, "-c", str(cli_config))
        assert code == 1, output
        assert "account paused (wrong_key)" in output
    restarted = await smsbridge_daemon(config)
    await until(lambda: held(restarted, refused=3))
    assert simulator.state.calls_by_key == {key_digest(WRONG): 1}

    write_key(key_file, DEFAULT_AUTHKEY)
    await simulator.state.wait_for(
        lambda s: {m.mobile for m in s.messages} == {ALICE, BOB}, timeout=5
    )
    await until(lambda: _all_sent(restarted))
    assert simulator.state.calls_by_key[key_digest(WRONG)] == 1
    assert simulator.state.account().wrong_key_calls == 1


async def run(*command: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode()


async def test_commands_without_the_store(simulator: Simulator, tmp_path: Path) -> None:
    """A command that cannot open the store says so; rotate-key then refuses to rotate, since
    a running daemon could not be told."""
    key_file, blocker = tmp_path / "c123-authkey", tmp_path / "not-a-directory"
    write_key(key_file, DEFAULT_AUTHKEY)
    blocker.write_text("")
    config = tmp_path / "cli.yaml"
    config.write_text(gateway(simulator.url, key_file, blocker / "smsbridge.sqlite3"))
    code, output = await run(SMSBRIDGE, "balance", "-c", str(config))
    assert code == 0, output
    assert "cannot be opened" in output
    code, output = await run(SMSBRIDGE, "rotate-key", "-c", str(config))
    assert code == 1, output
    assert "the key was not rotated" in output
    assert simulator.state.calls["updateKey"] == 0
    assert key_file.read_text().strip() == DEFAULT_AUTHKEY


async def test_several_instances_tell_operators_of_one_pause_once(
    pg_url: str,  # first: the database outlives the daemons
    smsbridge_daemon: DaemonFactory,
    simulator: Simulator,
    capture_output: CapturingOutput,
    tmp_path: Path,
) -> None:
    """Two instances on one database both see the account locked (one through the gateway's
    answer, the other through the pause it stored): one system event, one post to operators."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, DEFAULT_AUTHKEY)
    text = daemon_config(simulator.url, key_file, tmp_path / "unused.sqlite3").replace(
        f"store: {{path: {tmp_path / 'unused.sqlite3'}}}", f'store: {{url: "{pg_url}"}}'
    )
    first, second = await smsbridge_daemon(text), await smsbridge_daemon(text)
    told = {first: asyncio.Event(), second: asyncio.Event()}
    for daemon, event in told.items():
        hook = daemon.client.gate.on_pause
        assert hook is not None

        async def tell(pause: Pause, hook: PauseHook = hook, event: asyncio.Event = event) -> None:
            await hook(pause)  # the daemon's own: the system event, committed when it returns
            event.set()

        daemon.client.gate.on_pause = tell
    simulator.state.set_flags(DEFAULT_ACCOUNT, account_locked=True)
    await page(first)
    async with asyncio.timeout(10):
        await asyncio.gather(*(event.wait() for event in told.values()))
    posts = await first.store.read(
        lambda conn: conn.execute("SELECT count(*) FROM jobs WHERE output = 'ops'").fetchone()[0]
    )
    assert posts == 1
    await capture_output.wait_for(1)
    assert capture_output.delivered[0].text.startswith("SMS account paused (account_locked)")
