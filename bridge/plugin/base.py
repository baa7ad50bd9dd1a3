"""The adapter contract: what an output is handed, what it returns, and how it is built."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar, overload

import aiohttp
from aiohttp import web
from pydantic import BaseModel

from bridge.events import Event, ReplyRecord, ReportRecord
from bridge.plugin.replay import MemoryReplay, ReplayMemory

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class StoreUnavailableError(Exception):
    """The events could not be stored durably; an input answers 5xx so the sender retries."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """One item of a delivery that could not be used, and why (the others are accepted)."""

    index: int  # its position in the delivery (an alert of a group, an object of a list)
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.error}


class LazyEvents(Sequence[Event]):
    """Events made when first read, not when counted: the request path needs only how many a
    delivery holds (its answer); the processor, which reads them, makes them after the answer."""

    __slots__ = ("_count", "_events", "_make")

    def __init__(self, count: int, make: Callable[[], Sequence[Event]]) -> None:
        self._count = count
        self._make: Callable[[], Sequence[Event]] | None = make
        self._events: Sequence[Event] = ()

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self._made()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._made())

    def _made(self) -> Sequence[Event]:
        if self._make is not None:
            events = self._make()
            if len(events) != self._count:
                raise ValueError(f"made {len(events)} events where {self._count} were counted")
            self._events, self._make = events, None
        return self._events


@dataclass(frozen=True, slots=True)
class Parsed:
    """What an input's pure `parse` made of a stored body: the events, and the items it refused."""

    events: Sequence[Event]
    rejected: Sequence[Rejected] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One verified request, as an input hands it to the inbox.

    `body` is stored once, exactly as the input's `parse` reads it, so a restart can replay it;
    `parsed` is what that parse made of it now (the processor uses it instead of parsing again).
    `dedupe_key` names the delivery (e.g. Slack's event id): a second delivery with the same key
    within `dedupe_window` seconds is acknowledged as a duplicate and not processed again.
    """

    body: bytes
    parsed: Parsed
    dedupe_key: str = ""
    dedupe_window: float = 0.0


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the inbox did with a delivery, once it is durably stored (rules run afterwards)."""

    accepted: int  # events taken
    duplicate: bool = False  # the same delivery was seen before and was not stored again
    rejected: Sequence[Rejected] = ()  # items that could not be used

    def to_json(self) -> dict[str, Any]:
        """The answer body every webhook input gives."""
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": [item.to_json() for item in self.rejected],
        }


class Submit(Protocol):
    """Hands a delivery to the core's inbox; returns once it is durably stored.

    Raises StoreUnavailableError when it could not be stored (the input answers 503).
    """

    def __call__(self, delivery: Delivery) -> Awaitable[Accepted]: ...


async def _no_submit(delivery: Delivery) -> Accepted:
    raise StoreUnavailableError("this adapter was built without an inbox to submit to")


class RecordSink(Protocol):
    """Where a reply source hands what it polled: the core keeps it durably, then acts on it.

    Each call returns once the raw answer and its records are committed, so a reply source
    may forget them afterwards (reads of a destructive API must never be lost).
    """

    async def received(
        self,
        source: str,
        action: str,
        raw: bytes,
        replies: Sequence[ReplyRecord] = (),
        reports: Sequence[ReportRecord] = (),
    ) -> None: ...

    async def balance(
        self, source: str, raw: bytes, remain: Decimal, low: Decimal | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What the core hands every adapter instance; adapters never reach for globals."""

    name: str  # the instance name from the config
    http: aiohttp.ClientSession  # the daemon's one shared session
    log: Any  # a structlog logger bound to plugin=<type>, instance=<name>
    submit: Submit = _no_submit  # inputs hand their events to the core through this
    # Signatures and nonces already accepted; the daemon's is kept in the store.
    replay: ReplayMemory = field(default_factory=MemoryReplay)


@dataclass(frozen=True, slots=True)
class Job:
    """One message for one recipient, as the outbox hands it to an output."""

    id: int
    recipient: str  # a phone number for SMS; a channel or URL for other outputs
    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 0


class OutcomeKind(StrEnum):
    """What became of a job."""

    SENT = "sent"
    RETRY = "retry"  # certainly not sent, and trying again later can help
    # Certainly not sent, and waiting on the outside world (a top-up): uses no attempt, and the
    # rest of the batch waits with it instead of making calls that would be refused alike.
    HOLD = "hold"
    # Certainly not sent: the output's account takes no calls (a wrong key, a locked account).
    # Like HOLD, but the output says when it works again; held jobs then go out at once.
    PAUSE_ACCOUNT = "pause_account"
    FAILED = "failed"  # certainly not sent, and trying again cannot help
    UNKNOWN = "unknown"  # may or may not have been sent: retrying may duplicate it


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of delivering one job."""

    job_id: int
    kind: OutcomeKind
    reason: str = ""  # for people: why it failed or waits
    ref: str = ""  # the output's id for the message (the gateway's msgid)
    segments: int = 0  # what the far side billed, when it says
    cost: Decimal = Decimal(0)
    retry_after: float | None = None  # seconds the output suggests waiting
    code: str = ""  # the machine-readable cause, e.g. a gateway result code


class Adapter(ABC, Generic[ConfigT]):
    """What inputs and outputs share: built from their validated config and the context."""

    type_name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]

    def __init__(self, config: ConfigT, ctx: PluginContext) -> None:
        self.config = config
        self.ctx = ctx
        self.log = ctx.log

    async def start(self) -> None:
        """Open what the adapter needs; raising here fails start-up (or the reload)."""

    async def stop(self) -> None:
        """Release what start() opened; must not raise."""


class Output(Adapter[ConfigT]):
    """Delivers batches of jobs; each batch returns exactly one outcome per job.

    Generic in its config model: `class MyOutput(Output[MyConfig])` types `self.config`.
    """

    def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """Cut a claimed batch into the units one upstream call delivers.

        The outbox records each unit's outcomes before the next one is sent, so a crash can
        repeat at most the call that was in flight. The default is one unit per job.
        """
        return [[job] for job in jobs]

    @abstractmethod
    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Deliver the jobs; never raise for one job's failure, return its outcome instead."""


class Input(Adapter[ConfigT]):
    """Receives deliveries over HTTP under /hooks/<instance>/ and hands them to the inbox.

    A handler authenticates and validates a request, then submits a `Delivery`: the verified
    body and what `parse` made of it. It answers 2xx only after `ctx.submit` returned (the body
    is durably stored; rules run afterwards), 503 when it raised StoreUnavailableError (so the
    sender retries), and 4xx with a JSON body `{"error": "..."}` when the request as a whole is
    unusable (not JSON, wrong shape, failed authentication). Generic in its config model.
    """

    @abstractmethod
    def routes(self) -> list[web.RouteDef]:
        """Routes relative to /hooks/<instance>; the path "" is /hooks/<instance> itself."""

    @abstractmethod
    def parse(self, body: bytes) -> Parsed:
        """The events in a stored body: pure (no I/O, no clock), so a replay gives the same.

        Raises ValueError when the body is unusable; per-item problems go in `rejected`.
        """
