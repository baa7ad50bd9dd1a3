"""The adapter contract: what an output is handed, what it returns, and how it is built."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import aiohttp
from aiohttp import web
from pydantic import BaseModel

from bridge.events import Event


class StoreUnavailableError(Exception):
    """The events could not be stored durably; an input answers 5xx so the sender retries."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """What submit() did with a request's events, once they are durably stored."""

    events: int  # events taken
    intents: int  # messages decided by the rules (sent later by the outbox)
    duplicate: bool = False  # the same delivery was seen before and was not processed again


class Submit(Protocol):
    """Hands events to the core: rules run, intents are committed, then this returns.

    `dedupe_key` names the delivery (e.g. Alertmanager's groupKey + status + fingerprints);
    a second delivery with the same key within `dedupe_window` seconds is acknowledged and
    ignored. Raises StoreUnavailableError when nothing could be stored.
    """

    def __call__(
        self, events: Sequence[Event], *, dedupe_key: str = "", dedupe_window: float = 0.0
    ) -> Awaitable[Accepted]: ...


async def _no_submit(
    events: Sequence[Event], *, dedupe_key: str = "", dedupe_window: float = 0.0
) -> Accepted:
    raise StoreUnavailableError("this adapter was built without a pipeline to submit to")


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What the core hands every adapter instance; adapters never reach for globals."""

    name: str  # the instance name from the config
    http: aiohttp.ClientSession  # the daemon's one shared session
    log: Any  # a structlog logger bound to plugin=<type>, instance=<name>
    submit: Submit = _no_submit  # inputs hand their events to the core through this


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


class Output(ABC):
    """Delivers batches of jobs; each batch returns exactly one outcome per job."""

    type_name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel, ctx: PluginContext) -> None:
        self.config = config
        self.ctx = ctx
        self.log = ctx.log

    async def start(self) -> None:  # noqa: B027 - an optional hook, most outputs need none
        """Open what the output needs; raising here fails start-up (or the reload)."""

    async def stop(self) -> None:  # noqa: B027 - an optional hook, most outputs need none
        """Release what start() opened; must not raise."""

    def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """Cut a claimed batch into the units one upstream call delivers.

        The outbox records each unit's outcomes before the next one is sent, so a crash can
        repeat at most the call that was in flight. The default is one unit per job.
        """
        return [[job] for job in jobs]

    @abstractmethod
    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Deliver the jobs; never raise for one job's failure, return its outcome instead."""


class Input(ABC):
    """Receives events over HTTP under /hooks/<instance>/ and submits them to the core.

    A handler answers 2xx only after `ctx.submit` returned (the events are durably stored),
    5xx when it raised StoreUnavailableError (so the sender retries), and 4xx with a JSON body
    `{"error": "..."}` naming what is wrong for bad input or failed authentication.
    """

    type_name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel, ctx: PluginContext) -> None:
        self.config = config
        self.ctx = ctx
        self.log = ctx.log

    async def start(self) -> None:  # noqa: B027 - an optional hook, most inputs need none
        """Open what the input needs; raising here fails start-up (or the reload)."""

    async def stop(self) -> None:  # noqa: B027 - an optional hook, most inputs need none
        """Release what start() opened; must not raise."""

    @abstractmethod
    def routes(self) -> list[web.RouteDef]:
        """Routes relative to /hooks/<instance>; the path "" is /hooks/<instance> itself."""
