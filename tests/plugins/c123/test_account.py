"""The account gate against the simulator: proofs, wrong keys, pauses, key files, rotations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bridge.plugins.c123 import account, errors
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.keyfile import write_key
from bridge.plugins.c123.marks import Pause, StoreMarks
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
    SimulatorSettings,
    key_digest,
)
from bridge.store import SqliteStore, Store

A, B = "15102110086", "15102110087"
WRONG = "0" * 32


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(report_delay=0, rate_limit=None)) as sim:
        yield sim


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = SqliteStore(tmp_path / "smsbridge.sqlite3")
    await store.open()
    yield store
    await store.close()


def config(
    url: str, *, key: str = DEFAULT_AUTHKEY, key_file: Path | None = None, probe: str = "1m"
) -> C123Config:
    values: dict[str, object] = {
        "base_url": url,
        "account": DEFAULT_ACCOUNT,
        "rate_limit": None,
        "probe_interval": probe,
    }
    if key_file is None:
        values["authkey"] = SecretStr(key)
    else:
        values["authkey_file"] = key_file
    return C123Config.model_validate(values)


async def test_a_key_is_proven_before_any_other_call(
    simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    """The first call of a client is preceded by one getBalance; later calls are not."""
    client = C123Client(config(simulator.url), session)
    await client.send_once([A], "one")
    assert simulator.state.calls == {"getBalance": 1, "sendOnce": 1}
    await client.send_once([A], "two")
    assert simulator.state.calls == {"getBalance": 1, "sendOnce": 2}


async def test_concurrent_calls_with_a_wrong_key_cost_one_call(
    simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    """Eight calls at once with a wrong key: one reaches the gateway, the others never leave."""
    client = C123Client(config(simulator.url, key=WRONG), session)
    results = await asyncio.gather(
        *(client.send_once([A], f"page {n}") for n in range(4)),
        client.get_reply(),
        client.get_send_state(),
        client.get_balance(),
        client.send_batch([(A, "a"), (B, "b")]),
        return_exceptions=True,
    )
    kinds = sorted(type(result).__name__ for result in results)
    assert kinds == ["AccountPausedError"] * 7 + ["WrongKeyError"]
    assert simulator.state.calls_by_key == {key_digest(WRONG): 1}
    assert not simulator.state.account().key_locked
    with pytest.raises(errors.AccountPausedError, match="wrong_key"):
        await client.get_balance()
    assert sum(simulator.state.calls.values()) == 1


async def test_a_wrong_key_mark_is_shared_through_the_store(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store
) -> None:
    """A key one process found wrong is never tried by another that shares the store."""
    first = C123Client(config(simulator.url, key=WRONG), session, marks=StoreMarks(store))
    with pytest.raises(errors.WrongKeyError):
        await first.get_balance()
    second = C123Client(config(simulator.url, key=WRONG), session, marks=StoreMarks(store))
    with pytest.raises(errors.AccountPausedError, match="wrong_key"):
        await second.send_once([A], "x")
    assert simulator.state.calls_by_key == {key_digest(WRONG): 1}
    marks = await store.read(lambda c: [r[0] for r in c.execute("SELECT key FROM settings")])
    assert marks == [f"c123.{DEFAULT_ACCOUNT}.wrong_key.{key_digest(WRONG)}"]
    assert WRONG not in await store.read(
        lambda c: str(c.execute("SELECT * FROM settings").fetchall())
    )


async def test_a_rewritten_key_file_is_used_from_the_next_call(
    simulator: Simulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Fixing the key file brings the account back without a new client; the fix is proven."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, WRONG)
    client = C123Client(config(simulator.url, key_file=key_file), session)
    with pytest.raises(errors.WrongKeyError):
        await client.send_once([A], "x")
    with pytest.raises(errors.AccountPausedError):
        await client.send_once([A], "x")
    write_key(key_file, DEFAULT_AUTHKEY)
    await client.send_once([A], "x")
    assert simulator.state.calls_by_key == {key_digest(WRONG): 1, key_digest(DEFAULT_AUTHKEY): 2}
    assert simulator.state.calls == {"getBalance": 2, "sendOnce": 1}


@pytest.mark.parametrize("content", ["", "not a key\n", "5143a4b11d9c8e7f6a2b3c4d5e6f7a8b"])
async def test_a_key_file_without_a_key_makes_no_call(
    simulator: Simulator, session: aiohttp.ClientSession, tmp_path: Path, content: str
) -> None:
    """A half-written or mistyped key file pauses the account: nothing reaches the gateway."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, DEFAULT_AUTHKEY)
    client = C123Client(config(simulator.url, key_file=key_file), session)
    await client.get_balance()
    key_file.write_text(content)
    with pytest.raises(errors.AccountPausedError, match="key_file") as info:
        await client.send_once([A], "x")
    assert str(key_file) in str(info.value)
    assert simulator.state.calls == {"getBalance": 2}


async def test_an_account_fault_pauses_until_a_probe_answers(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store
) -> None:
    """-7 pauses the account: calls are refused at once; the watching process probes with one
    getBalance per interval and resumes when it answers."""
    resumed = asyncio.Event()
    paused: list[Pause] = []

    async def on_pause(pause: Pause) -> None:
        paused.append(pause)

    async def on_resume() -> None:
        resumed.set()

    client = C123Client(
        config(simulator.url, probe="200ms"),
        session,
        marks=StoreMarks(store),
        on_pause=on_pause,
        on_resume=on_resume,
    )
    await client.get_balance()
    simulator.state.set_flags(DEFAULT_ACCOUNT, api_disabled=True)
    async with client.gate.watching():
        with pytest.raises(errors.ApiDisabledError):
            await client.send_once([A], "x")
        with pytest.raises(errors.AccountPausedError, match="api_disabled"):
            await client.send_once([A], "x")
        assert [pause.reason for pause in paused] == ["api_disabled"]
        loop = asyncio.get_running_loop()
        paused_at, calls = loop.time(), simulator.state.calls["getBalance"]
        await simulator.state.wait_for(lambda s: s.calls["getBalance"] >= calls + 2)
        assert loop.time() - paused_at >= 0.35  # two probes, one per 200 ms interval
        simulator.state.set_flags(DEFAULT_ACCOUNT, api_disabled=False)
        await asyncio.wait_for(resumed.wait(), 5)
        await client.send_once([A], "x")
    assert simulator.state.calls["sendOnce"] == 2
    assert len(simulator.state.messages) == 1
    marks = await StoreMarks(store).load([client.gate.names.pause, client.gate.names.proven])
    assert marks[client.gate.names.pause] == ""  # the pause is lifted in the store too
    assert marks[client.gate.names.proven]  # and the key's proof is shared


async def test_a_pause_the_hook_failed_to_tell_is_told_on_the_next_round(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store
) -> None:
    """Telling operators failed (the hook raised): the watching gate tells again, paced, until
    told."""
    attempts: list[str] = []
    told = asyncio.Event()

    async def on_pause(pause: Pause) -> None:
        attempts.append(pause.reason)
        if len(attempts) == 1:
            raise RuntimeError("the rules are not ready yet")
        told.set()

    client = C123Client(config(simulator.url), session, marks=StoreMarks(store), on_pause=on_pause)
    await client.get_balance()
    simulator.state.set_flags(DEFAULT_ACCOUNT, api_disabled=True)
    async with client.gate.watching():
        with pytest.raises(errors.ApiDisabledError):
            await client.send_once([A], "x")
        loop = asyncio.get_running_loop()
        failed_at = loop.time()
        await asyncio.wait_for(told.wait(), 10)
        assert loop.time() - failed_at >= account.TELL_AGAIN_AFTER - 0.5  # not at every watch
    assert attempts == ["api_disabled", "api_disabled"]  # told once it worked, not again


async def test_only_the_instance_allowed_to_probe_does(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store
) -> None:
    """Two instances watch one paused account: only the one holding the poll lease probes;
    the other resumes from the shared marks when the probe lifts the pause."""
    prober = C123Client(config(simulator.url, probe="200ms"), session, marks=StoreMarks(store))
    follower = C123Client(config(simulator.url, probe="200ms"), session, marks=StoreMarks(store))
    follower.gate.may_probe = lambda: False
    pause_mark = follower.gate.names.pause
    await prober.get_balance()
    await follower.get_balance()
    simulator.state.set_flags(DEFAULT_ACCOUNT, api_disabled=True)
    with pytest.raises(errors.ApiDisabledError):
        await follower.send_once([A], "x")
    async with follower.gate.watching():
        calls = simulator.state.calls["getBalance"]
        await asyncio.sleep(0.6)  # nothing to await: three probe intervals pass in silence
        assert simulator.state.calls["getBalance"] == calls, "the follower probed"
        simulator.state.set_flags(DEFAULT_ACCOUNT, api_disabled=False)
        async with prober.gate.watching():
            await prober.gate.refresh()  # sees the pause the follower found, and probes it
            await simulator.state.wait_for(lambda s: s.calls["getBalance"] > calls)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while await StoreMarks(store).load([pause_mark]) != {pause_mark: ""}:
                assert loop.time() < deadline, "the probe did not lift the pause"
                await asyncio.sleep(0.02)  # the prober records the lift right after its answer
            await follower.gate.refresh()
            await follower.send_once([A], "x")  # the pause is lifted for the follower too
    assert len(simulator.state.messages) == 1


async def test_a_key_one_instance_proved_is_not_proved_again(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store
) -> None:
    """Instances share the proof of a key: the second one's first call needs no getBalance."""
    first = C123Client(config(simulator.url), session, marks=StoreMarks(store))
    second = C123Client(config(simulator.url), session, marks=StoreMarks(store))
    await first.send_once([A], "x")
    assert simulator.state.calls == {"getBalance": 1, "sendOnce": 1}
    await second.send_once([A], "y")
    assert simulator.state.calls == {"getBalance": 1, "sendOnce": 2}


async def test_a_pause_found_by_another_process_is_respected(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store
) -> None:
    """The command line makes no call while the daemon's store says the account is paused."""
    daemon = C123Client(config(simulator.url), session, marks=StoreMarks(store))
    simulator.state.add_fault(Fault(FaultKind.CODE, code=-6, action=Action.GET_BALANCE))
    with pytest.raises(errors.AccountLockedError):
        await daemon.get_balance()
    command = C123Client(config(simulator.url), session, marks=StoreMarks(store))
    with pytest.raises(errors.AccountPausedError, match="account_locked") as info:
        await command.send_once([A], "x")
    assert "no call made" in str(info.value)
    assert simulator.state.calls == {"getBalance": 1}


async def test_a_rotation_waits_for_the_daemons_calls_in_flight(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store, tmp_path: Path
) -> None:
    """While a daemon's send hangs, rotate-key waits for it; the daemon's next call uses the
    new key: the gateway never sees the old key after the rotation."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, DEFAULT_AUTHKEY)
    daemon = C123Client(config(simulator.url, key_file=key_file), session, marks=StoreMarks(store))
    command = C123Client(config(simulator.url, key_file=key_file), session, marks=StoreMarks(store))
    await daemon.get_balance()
    simulator.state.add_fault(Fault(FaultKind.DELAY, seconds=1.0, action=Action.SEND_ONCE))
    async with daemon.gate.watching():
        hanging = asyncio.create_task(daemon.send_once([A], "in flight"))
        await simulator.state.wait_for(lambda s: s.account().in_flight == 1)
        async with command.gate.rotation(drain=5.0):
            assert hanging.done()  # the daemon's call finished before the key could change
            blocked = asyncio.create_task(daemon.get_balance())
            rotation = await command.update_key(key_file)
            await asyncio.sleep(0)
            assert not blocked.done()  # held at the gate while the rotation runs
        await blocked
        await daemon.send_once([A], "after")
    await hanging
    assert simulator.state.account().wrong_key_calls == 0
    assert key_file.read_text().strip() == rotation.authkey
    assert [m.content for m in simulator.state.messages] == ["in flight", "after"]
    new = key_digest(rotation.authkey)
    assert simulator.state.calls_by_key[new] == 3  # the daemon's proof, getBalance, the send


async def test_a_rotation_without_a_daemon_goes_ahead(
    simulator: Simulator, session: aiohttp.ClientSession, store: Store, tmp_path: Path
) -> None:
    """With no daemon to answer, rotate-key goes ahead after a short, bounded wait."""
    key_file = tmp_path / "c123-authkey"
    write_key(key_file, DEFAULT_AUTHKEY)
    command = C123Client(config(simulator.url, key_file=key_file), session, marks=StoreMarks(store))
    async with asyncio.timeout(5), command.gate.rotation(drain=30.0):
        await command.update_key(key_file)
    assert simulator.state.calls["updateKey"] == 1


async def test_a_lost_proof_is_not_an_ambiguous_send(
    simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    """When the proof's answer is lost, the send that waited for it certainly did not go."""
    client = C123Client(config(simulator.url), session)
    simulator.state.add_fault(Fault(FaultKind.DROP, action=Action.GET_BALANCE))
    with pytest.raises(errors.KeyNotProvenError) as info:
        await client.send_once([A], "x")
    assert (info.value.ambiguous, info.value.retryable) == (False, True)
    assert simulator.state.calls == {"getBalance": 1}
    await client.send_once([A], "x")  # the next call proves the key again, then sends
    assert simulator.state.calls == {"getBalance": 2, "sendOnce": 1}
