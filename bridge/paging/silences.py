"""`ack 2h` made real: silences created in Alertmanager (its v2 API) after the ack commits, on
a durable pending-silence timer so that a crash between the two still makes them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bridge.config.oncall import SilencesConfig
from bridge.events import Event, Intent
from bridge.intake import Pipeline
from bridge.outbox import jobs as outbox
from bridge.sms import mask_number
from bridge.store import Connection, Store, timers

API = "/api/v2/silences"
CREATED_BY = "smsbridge"
TIMEOUT = aiohttp.ClientTimeout(total=10)
# One `name="value"` of a group key (values escaped as bridge.rules.matchers.escape_value does).
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}
# One timer per `ack 2h`, written with the acknowledgement and dropped with the queueing of its
# answer: if the daemon dies in between, the timer comes due and the silences are made then.
PENDING_TIMER = "paging.silence"
RETRY_AFTER = 300.0  # longer than any run takes (a few requests of at most TIMEOUT each)


class SilenceError(Exception):
    """Alertmanager did not make the silence; the text is safe to show (no secrets)."""


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    """One silence to create: what it matches, until when, and why."""

    incident: int
    title: str
    matchers: tuple[tuple[str, str], ...]  # equality matchers, never empty
    ends_at: float
    comment: str


@dataclass(slots=True)
class SilenceAnswer:
    """The answer to an `ack 2h` reply, sent once its silences were tried."""

    config: SilencesConfig
    output: str
    mobile: str
    answer: str  # what the acknowledgement did
    event: Event
    rule: str
    requests: list[SilenceRequest] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # incidents no silence could be made for
    key: str = ""  # its PENDING_TIMER, dropped when the answer is queued

    def payload(self) -> dict[str, Any]:
        """What the pending-silence timer keeps of it (the config is the config of the day)."""
        return {
            "output": self.output,
            "mobile": self.mobile,
            "answer": self.answer,
            "event": self.event.to_json(),
            "rule": self.rule,
            "refused": self.refused,
            "requests": [
                {
                    "incident": r.incident,
                    "title": r.title,
                    "matchers": [list(m) for m in r.matchers],
                    "ends_at": r.ends_at,
                    "comment": r.comment,
                }
                for r in self.requests
            ],
        }

    @classmethod
    def from_timer(cls, config: SilencesConfig, timer: timers.Timer) -> SilenceAnswer:
        """The answer a pending-silence timer kept, to be made again."""
        found = timer.payload
        return cls(
            config=config,
            output=found["output"],
            mobile=found["mobile"],
            answer=found["answer"],
            event=Event.from_json(found["event"]),
            rule=found["rule"],
            requests=[
                SilenceRequest(
                    incident=int(r["incident"]),
                    title=r["title"],
                    matchers=tuple((str(n), str(v)) for n, v in r["matchers"]),
                    ends_at=float(r["ends_at"]),
                    comment=r["comment"],
                )
                for r in found["requests"]
            ],
            refused=list(found["refused"]),
            key=timer.key,
        )


def group_matchers(group_key: str, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Equality matchers for an incident: its group_by labels (from the group key), or else the
    labels of the alert that opened it. Labels with empty values are left out (Alertmanager
    refuses a silence whose every matcher matches the empty string); may return ()."""
    _, brace, body = group_key.partition("{")
    found: list[tuple[str, str]] = []
    if brace:
        for name, raw in _PAIR.findall(body.removesuffix("}")):
            value = re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(0)), raw)
            if value:
                found.append((name, value))
    if not found:
        found = [(name, value) for name, value in sorted(labels.items()) if value]
    return tuple(found)


def silence_body(request: SilenceRequest, now: float) -> dict[str, Any]:
    """The POST /api/v2/silences body for a request; raises SilenceError without matchers."""
    if not request.matchers:
        raise SilenceError("a silence without matchers would silence every alert")
    return {
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in request.matchers
        ],
        "startsAt": _iso(now),
        "endsAt": _iso(request.ends_at),
        "createdBy": CREATED_BY,
        "comment": request.comment,
    }


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).isoformat().replace("+00:00", "Z")


def _headers(config: SilencesConfig) -> dict[str, str]:
    auth = config.auth
    if auth is None:
        return {}
    if auth.bearer is not None:
        return {"Authorization": f"Bearer {auth.bearer.get_secret_value()}"}
    assert auth.basic is not None
    password = auth.basic.password.get_secret_value()
    return {"Authorization": aiohttp.encode_basic_auth(auth.basic.username, password)}


async def create_silence(
    session: aiohttp.ClientSession, config: SilencesConfig, request: SilenceRequest, now: float
) -> str:
    """Create one silence; returns its id, or raises SilenceError saying why not."""
    url = str(config.url).rstrip("/") + API
    body = silence_body(request, now)
    try:
        async with session.post(
            url, json=body, headers=_headers(config), timeout=TIMEOUT
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise SilenceError(f"Alertmanager answered {response.status}: {text[:200]}")
            found = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise SilenceError(f"cannot reach Alertmanager: {type(exc).__name__}") from None
    ident = found.get("silenceID") if isinstance(found, dict) else None
    if not isinstance(ident, str):
        raise SilenceError("Alertmanager gave no silence id")
    return ident


class Silencer:
    """Creates the silences acknowledgements asked for, after their transaction committed, on
    the daemon's shared HTTP session; then queues each replier's answer saying what was made.

    A failure is logged and said in the answer; the acknowledgement stands. One per daemon: a
    reload's new Pager hands it the config of the moment with each answer.
    """

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        pipeline: Pipeline,
        log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.session = session
        self.pipeline = pipeline
        self.log = log
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, answer: SilenceAnswer) -> None:
        """Start the work for one committed acknowledgement (called at the commit's flush)."""
        task = asyncio.get_running_loop().create_task(self.run(answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, answer: SilenceAnswer) -> None:
        """Create the answer's silences in turn, then queue the answer."""
        made: list[str] = []
        failed = list(answer.refused)
        for request in answer.requests:
            try:
                ident = await create_silence(self.session, answer.config, request, self.clock())
            except SilenceError as exc:
                self.log.error("silence_failed", incident=request.incident, reason=str(exc))
                failed.append(f"#{request.incident}")
                continue
            self.log.info("silence_created", incident=request.incident, silence=ident)
            until = datetime.fromtimestamp(request.ends_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            made.append(f"silenced #{request.incident} until {until}")
        text = "; ".join([answer.answer, *made] if answer.answer else made)
        if failed:
            text += f"; no silence made for {', '.join(failed)}"
        try:
            await self._queue(answer, text)
        except Exception:  # a background task: nobody else would see it
            self.log.exception("silence_answer_failed", mobile=mask_number(answer.mobile))

    async def _queue(self, answer: SilenceAnswer, text: str) -> None:
        now = self.clock()
        intent = Intent(
            output=answer.output,
            recipient=answer.mobile,
            text=text,
            rule=answer.rule,
            event=answer.event,
        )
        segments, _ = self.pipeline.estimate(answer.output, text)

        def queue(conn: Connection) -> bool:
            # Its timer gone: a run resumed after a restart has answered already.
            if answer.key and not timers.cancel(conn, PENDING_TIMER, answer.key):
                return False
            outbox.add_job(conn, intent, None, now, segments=segments)
            return True

        if await self.store.write(queue):
            self.pipeline.wake({answer.output})

    async def drain(self) -> None:
        """Wait for the silences under way (for a clean stop, and for tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
