"""The c123 output: delivers SMS jobs in the fewest gateway calls and classifies each outcome."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.plugin import Job, Outcome, OutcomeKind, Output, PluginContext
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.errors import (
    C123Error,
    ChargingFailedError,
    GatewayRefusedError,
    InsufficientBalanceError,
    InvalidRequestError,
    RateLimitedError,
    UnknownResultCodeError,
)
from bridge.plugins.c123.models import PlannedCall, SendResult

# The gateway publishes no rate; -1 is usually a burst, so a short pause is the right first step.
RATE_LIMIT_PAUSE = 5.0
# A low balance needs a person to top up: check again now and then, not in a tight loop.
BALANCE_HOLD = 300.0


def classify(error: C123Error) -> tuple[OutcomeKind, float | None, bool]:
    """How a failed call's jobs stand: retry (when, and whether it is a hold), failed, unknown."""
    if error.ambiguous:
        return OutcomeKind.UNKNOWN, None, False
    if isinstance(error, RateLimitedError):
        return OutcomeKind.RETRY, RATE_LIMIT_PAUSE, False
    if isinstance(error, InsufficientBalanceError | ChargingFailedError):
        # Only a top-up helps: wait for it without using up the job's attempts.
        return OutcomeKind.RETRY, BALANCE_HOLD, True
    if error.retryable:
        return OutcomeKind.RETRY, None, False
    return OutcomeKind.FAILED, None, False


def _code(error: C123Error) -> str:
    if isinstance(error, GatewayRefusedError | UnknownResultCodeError):
        return str(error.code)
    return type(error).__name__


class C123Output(Output):
    """Sends SMS through one c123 account."""

    type_name = "c123"
    config_class = C123Config

    def __init__(self, config: C123Config, ctx: PluginContext, client: C123Client | None = None):
        super().__init__(config, ctx)
        self.client = client or C123Client(config, ctx.http, log=ctx.log)

    def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """One unit per gateway call the jobs need (invalid ones go alone, to fail alone)."""
        units: list[list[Job]] = []
        by_pair: dict[tuple[str, str], list[Job]] = {}
        pairs = []
        for job in jobs:
            try:
                (call,) = self.client.plan([(job.recipient, job.text)])
            except InvalidRequestError:
                units.append([job])
                continue
            message = call.messages[0]
            by_pair.setdefault((message.number, message.text), []).append(job)
            pairs.append((message.number, message.text))
        for call in self.client.plan(pairs) if pairs else []:
            unit = [job for m in call.messages for job in by_pair.pop((m.number, m.text), [])]
            if unit:
                units.append(unit)
        return units

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        by_pair: dict[tuple[str, str], list[Job]] = {}
        valid = []
        for job in jobs:
            try:
                (call,) = self.client.plan([(job.recipient, job.text)])
            except InvalidRequestError as exc:
                outcomes[job.id] = Outcome(job.id, OutcomeKind.FAILED, str(exc), code="invalid")
                continue
            message = call.messages[0]
            by_pair.setdefault((message.number, message.text), []).append(job)
            valid.append((message.number, message.text))
        for call in self.client.plan(valid) if valid else []:
            try:
                result = await self.client.send_planned(call)
            except C123Error as exc:
                self._record_failure(call, exc, by_pair, outcomes)
                continue
            self._record_success(call, result, by_pair, outcomes)
        return [outcomes[job.id] for job in jobs]

    def _record_success(
        self,
        call: PlannedCall,
        result: SendResult,
        by_pair: dict[tuple[str, str], list[Job]],
        outcomes: dict[int, Outcome],
    ) -> None:
        price = result.items[0].price
        for message in call.messages:
            for job in by_pair[(message.number, message.text)]:
                outcomes[job.id] = Outcome(
                    job.id,
                    OutcomeKind.SENT,
                    ref=result.msgid_for(message.number),
                    segments=message.segments,
                    cost=price * message.segments,
                )

    def _record_failure(
        self,
        call: PlannedCall,
        error: C123Error,
        by_pair: dict[tuple[str, str], list[Job]],
        outcomes: dict[int, Outcome],
    ) -> None:
        kind, after, hold = classify(error)
        for message in call.messages:
            for job in by_pair[(message.number, message.text)]:
                outcomes[job.id] = Outcome(
                    job.id, kind, str(error), retry_after=after, code=_code(error), hold=hold
                )
