"""One account's gate: every call passes it, so a bad key or a locked account costs one call.

- A key is proven by one getBalance before any other call goes out with it; calls that come
  meanwhile wait for the proof instead of each trying the key.
- A key the gateway refused (-2) is marked by its digest in the shared marks and never used
  again, by this process or another, until the key changes (the key file is rewritten).
- Other account faults (-3, -5..-8) pause the account: no call goes out but one getBalance per
  probe interval, made by the process that watches (the daemon); it resumes when one answers.
- `rotate-key` marks a rotation; the watching process stops admitting calls, tells when those
  in flight are done, and goes on with the new key once the mark is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import structlog
from pydantic import SecretStr

from bridge.plugins.c123.errors import (
    AccountPausedError,
    C123Error,
    GatewayRefusedError,
    KeyNotProvenError,
    KeyRotationError,
)
from bridge.plugins.c123.keyfile import KeyFileError
from bridge.plugins.c123.keys import Key, KeySource
from bridge.plugins.c123.marks import (
    MarkNames,
    Marks,
    MemoryMarks,
    Pause,
    Rotation,
    RotationAck,
)
from bridge.plugins.c123.models import Action

T = TypeVar("T")
PauseHook = Callable[[Pause], Awaitable[None]]
ResumeHook = Callable[[], Awaitable[None]]
Probe = Callable[[SecretStr], Awaitable[object]]

# How often the watching process reads the marks and the key file.
WATCH_EVERY = 0.25
# Seconds between attempts to tell operators of a pause when telling failed (not every watch).
TELL_AGAIN_AFTER = 2.0
# How long `rotate-key` waits to hear from a daemon before taking it that none runs.
ROTATION_NOTICE = 2.0
# What the rotation itself may take (updateKey and writing the file) before the mark expires.
ROTATION_WORK = 60.0
# How often a process that does not watch looks at a rotation under way.
_POLL = 0.05

WRONG_KEY_DETAIL = "the gateway refused this key (-2); it is not used again until the key changes"


class AccountGate:
    """Admits the calls of one account; see the module's docstring for the rules."""

    def __init__(
        self,
        account: str,
        keys: KeySource,
        probe: Probe,
        *,
        marks: Marks | None = None,
        probe_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        log: Any = None,
        on_pause: PauseHook | None = None,
        on_resume: ResumeHook | None = None,
    ) -> None:
        self.account = account
        self.keys = keys
        self.marks = marks if marks is not None else MemoryMarks()
        self.names = MarkNames(account)
        self.probe_interval = probe_interval
        self.clock = clock
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.refused = 0  # calls refused without reaching the gateway
        self._probe = probe
        self._log = log if log is not None else structlog.get_logger("smsbridge.c123")
        self._proven = ""  # digest of the key proven in this process
        self._wrong: dict[str, float] = {}  # digests the gateway refused -> when
        self._pause: Pause | None = None  # a pause a probe can lift
        self._changes = 0  # local changes of _pause, so a stale read never undoes one
        self._announced = ""  # the pause reason operators were last told of ('' = running)
        self._tell_again_at = 0.0  # after a failed telling, not before this
        self._follow_tried = ""  # digest the watcher last tried to prove after a key pause
        self._in_flight = 0
        self._open = asyncio.Event()
        self._open.set()
        self._proving = asyncio.Lock()
        self._watching = False
        self._rotating_here = ""  # id of the rotation this process is making
        self._rotation_seen = ""  # id of the rotation the watcher acknowledged
        self._rotation_stopped = ""  # ... and reported stopped
        # With several instances, only the one holding the account's poll lease probes a
        # paused account: one getBalance per interval for the account, not per instance.
        self.may_probe: Callable[[], bool] = lambda: True

    # --- calls -------------------------------------------------------------------------------

    async def call(self, action: Action, send: Callable[[SecretStr], Awaitable[T]]) -> T:
        """Run `send` with the current key once the account may take it; else raise
        AccountPausedError without calling."""
        key = await self._admit(action)
        return await self._run(key, send)

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet answered."""
        return self._in_flight

    def hold_for(self) -> float:
        """Seconds until the account is looked at again (a resume comes sooner by a hook)."""
        pause = self._pause
        if pause is not None and pause.probe_at is not None:
            return max(pause.probe_at - self.clock(), 1.0)
        return self.probe_interval

    def adopt(self, secret: SecretStr) -> None:
        """Use a key the gateway just issued (updateKey): it is proven by that answer."""
        self._proven = self.keys.adopt(secret).digest

    async def _admit(self, action: Action) -> Key:
        while True:
            if not self._watching:
                await self.refresh()
                if not self._open.is_set():
                    await asyncio.sleep(_POLL)  # a rotation elsewhere; nobody watches for us
                    continue
            await self._open.wait()
            key, pause = self._state()
            if pause is not None:
                await self._announce(pause)
                self._refuse(action, pause)
            assert key is not None  # no pause means a readable key
            if key.digest == self._proven:
                return key
            await self._prove(key)

    async def _run(self, key: Key, send: Callable[[SecretStr], Awaitable[T]]) -> T:
        self._in_flight += 1
        try:
            return await send(key.secret)
        except C123Error as exc:
            if exc.account_fault:
                await self._faulted(exc, key)
            raise
        finally:
            self._in_flight -= 1

    async def _prove(self, key: Key) -> None:
        """One getBalance with a key not used before; calls arriving meanwhile wait for it."""
        async with self._proving:
            if key.digest == self._proven or key.digest in self._wrong:
                return  # another caller proved (or disproved) it while this one waited
            try:
                await self._run(key, self._probe)
            except C123Error as exc:
                if exc.ambiguous:  # about the proof: the call waiting for it certainly did not go
                    raise KeyNotProvenError(f"key not proven: {exc}") from None
                raise
            self._proven = key.digest
            self._log.info("gateway_key_proven", account=self.account, key=key.digest[:12])
            await self.marks.save({self.names.proven: key.digest})
            await self._lift()

    def _refuse(self, action: Action, pause: Pause) -> NoReturn:
        self.refused += 1
        raise AccountPausedError(pause.reason, pause.detail, action=action.value)

    # --- state -------------------------------------------------------------------------------

    def _state(self) -> tuple[Key | None, Pause | None]:
        """The key to use and, when the account takes no calls, why."""
        try:
            key = self.keys.current()
        except KeyFileError as exc:
            return None, Pause("key_file", str(exc), self.clock())
        wrong_since = self._wrong.get(key.digest)
        if wrong_since is not None:
            return key, Pause("wrong_key", WRONG_KEY_DETAIL, wrong_since)
        return key, self._pause

    async def _faulted(self, exc: C123Error, key: Key) -> None:
        now = self.clock()
        if exc.account_fault == "wrong_key":
            self._wrong[key.digest] = now
            self._log.error(
                "gateway_key_wrong",
                account=self.account,
                key=key.digest[:12],
                note="not used again until the key changes",
            )
            await self.marks.save({self.names.wrong_key(key.digest): str(now)})
        else:
            detail = str(exc)
            if isinstance(exc, GatewayRefusedError):
                detail = f"the gateway answered {exc.code}: {exc.meaning}"
            pause = Pause(exc.account_fault, detail, now, now + self.probe_interval)
            self._set_pause(pause)
            await self.marks.save({self.names.pause: pause.text()})
        await self._announce(self._state()[1])

    def _set_pause(self, pause: Pause | None) -> None:
        self._pause = pause
        self._changes += 1

    async def _lift(self) -> None:
        """A call went through: a pause a probe can lift is over."""
        if self._pause is not None:
            self._set_pause(None)
            await self.marks.save({self.names.pause: ""})
        await self._announce(self._state()[1])

    async def _announce(self, pause: Pause | None) -> None:
        """Tell operators when the account stops or starts taking calls (once per change)."""
        reason = pause.reason if pause is not None else ""
        if reason == self._announced or self.clock() < self._tell_again_at:
            return
        previous, self._announced = self._announced, reason
        try:
            if pause is None:
                self._log.info("account_resumed", account=self.account, was=previous)
                if self.on_resume is not None:
                    await self.on_resume()
            else:
                self._log.warning(
                    "account_paused",
                    account=self.account,
                    reason=pause.reason,
                    detail=pause.detail,
                    probe_in=None if pause.probe_at is None else round(self.hold_for(), 1),
                )
                if self.on_pause is not None:
                    await self.on_pause(pause)
        except Exception:  # telling must never stop the gate itself
            self._log.exception("account_hook_failed", account=self.account)
            # Not told: the next round of watching tells again (the daemon's system event is
            # taken once, however often it is raised).
            self._announced = previous
            self._tell_again_at = self.clock() + TELL_AGAIN_AFTER

    async def refresh(self) -> None:
        """Read the shared marks: wrong keys, a pause, a rotation another process makes."""
        try:
            digest = self.keys.current().digest
        except KeyFileError:
            digest = ""
        names = [self.names.pause, self.names.rotation, self.names.proven]
        if digest:
            names.append(self.names.wrong_key(digest))
        changes = self._changes
        values = await self.marks.load(names)
        marked = values.get(self.names.wrong_key(digest)) if digest else None
        if marked and digest not in self._wrong:
            # Since when the process that got -2 says: every instance then names this pause
            # alike, and the operators are told of it once.
            self._wrong[digest] = _float(marked, self.clock())
        if digest and values[self.names.proven] == digest and digest not in self._wrong:
            self._proven = digest  # another process (instance) proved it: no second proof
        if changes == self._changes:  # nothing changed it here while the marks were read
            self._pause = Pause.parse(values[self.names.pause])
        await self._follow_rotation(Rotation.parse(values[self.names.rotation]))
        await self._announce(self._state()[1])

    # --- watching (the daemon) ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Follow the marks and the key file, probe a paused account, answer rotations."""
        await self.refresh()
        self._watching = True
        task = asyncio.create_task(self._watch(), name=f"c123-account-{self.account}")
        try:
            yield
        finally:
            self._watching = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._open.set()

    async def _watch(self) -> None:
        while True:
            try:
                await self.refresh()
                await self._follow_key()
                await self._probe_if_due()
            except Exception:  # a store hiccup: keep watching, the next round reads again
                self._log.exception("account_watch_failed", account=self.account)
            await asyncio.sleep(WATCH_EVERY)

    async def _follow_key(self) -> None:
        """After a key pause, prove a new key as soon as the file has one (once per key)."""
        if self._announced not in ("wrong_key", "key_file") or not self._open.is_set():
            return
        if not self.may_probe():
            return  # the instance that probes proves it; the others read the verdict
        key, pause = self._state()
        if key is None or pause is not None or key.digest == self._follow_tried:
            return
        self._follow_tried = key.digest
        with contextlib.suppress(C123Error):  # a failed proof is logged; calls try again
            await self._prove(key)

    async def _probe_if_due(self) -> None:
        """One getBalance per probe interval while the account is paused."""
        pause = self._pause
        if pause is None or pause.probe_at is None or self.clock() < pause.probe_at:
            return
        if not self.may_probe():
            return  # another instance probes; its result reaches this one through the marks
        if not self._open.is_set():
            return
        key, state = self._state()
        if key is None or state is not pause:
            return  # the key is the problem now: a probe with it cannot help
        try:
            async with self._proving:
                await self._run(key, self._probe)
        except C123Error as exc:
            if not exc.account_fault:  # no answer: look again one interval later
                now = self.clock()
                later = Pause(pause.reason, pause.detail, pause.since, now + self.probe_interval)
                self._set_pause(later)
                await self.marks.save({self.names.pause: later.text()})
            self._log.info("account_probe_failed", account=self.account, error=type(exc).__name__)
            return
        self._proven = key.digest
        await self._lift()

    async def _follow_rotation(self, rotation: Rotation | None) -> None:
        now = self.clock()
        active = (
            rotation is not None and rotation.id != self._rotating_here and rotation.until > now
        )
        if not active or rotation is None:
            if not self._open.is_set():
                self._open.set()
                self._log.info("gateway_key_rotation_over", account=self.account)
            return
        if self._open.is_set():
            self._open.clear()
            self._log.warning("gateway_key_rotation_seen", account=self.account)
        if not self._watching:
            return  # only the watching process answers
        if self._rotation_seen != rotation.id:
            self._rotation_seen = rotation.id
            await self.marks.save({self.names.rotation_ack: RotationAck(rotation.id, False).text()})
        if self._rotation_stopped != rotation.id and self._in_flight == 0:
            self._rotation_stopped = rotation.id
            await self.marks.save({self.names.rotation_ack: RotationAck(rotation.id, True).text()})

    # --- rotating (the command line) ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def rotation(self, drain: float) -> AsyncIterator[None]:
        """Hold every other process's calls while the key is replaced inside this block.

        A running daemon answers within ROTATION_NOTICE and then reports when its calls in
        flight are done (they may take up to `drain` seconds); with no answer, none runs.
        """
        if not self.marks.shared:  # no other process could be told, or be using the key
            yield
            return
        rotation_id = secrets.token_hex(8)
        until = self.clock() + ROTATION_NOTICE + drain + ROTATION_WORK
        self._rotating_here = rotation_id
        await self.marks.save({self.names.rotation: Rotation(rotation_id, until).text()})
        try:
            await self._await_daemon(rotation_id, drain)
            yield
        finally:
            await self.marks.save({self.names.rotation: ""})
            self._rotating_here = ""

    async def _await_daemon(self, rotation_id: str, drain: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROTATION_NOTICE
        answered = False
        while True:
            values = await self.marks.load([self.names.rotation_ack])
            ack = RotationAck.parse(values[self.names.rotation_ack])
            if ack is not None and ack.id == rotation_id:
                if ack.stopped:
                    self._log.info("gateway_key_rotation_daemon_stopped", account=self.account)
                    return
                if not answered:
                    answered, deadline = True, loop.time() + drain
            if loop.time() >= deadline:
                break
            await asyncio.sleep(_POLL)
        if answered:
            raise KeyRotationError(
                f"the running daemon still had gateway calls in flight after {drain:g} s; "
                "the key was not rotated (try again)"
            )
        self._log.info("gateway_key_rotation_no_daemon", account=self.account)


def _float(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default
