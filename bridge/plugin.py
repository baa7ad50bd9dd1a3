"""The adapter contract: what an output is handed, what it returns, and how it is built."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What the core hands every adapter instance; adapters never reach for globals."""

    name: str  # the instance name from the config
    http: aiohttp.ClientSession  # the daemon's one shared session
    log: Any  # a structlog logger bound to plugin=<type>, instance=<name>


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
    FAILED = "failed"  # certainly not sent, and trying again cannot help
    UNKNOWN = "unknown"  # may or may not have been sent: retrying may duplicate it


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of delivering one job."""

    job_id: int
    kind: OutcomeKind
    reason: str = ""  # for people: why it failed or waits
    ref: str = ""  # the output's id for the message (the gateway's msgid)
    segments: int = 0
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

    @abstractmethod
    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Deliver the jobs; never raise for one job's failure, return its outcome instead."""
