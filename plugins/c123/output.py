"""The c123 output: delivers SMS jobs in the fewest gateway calls and classifies each outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from bridge.plugin import Job, Outcome, OutcomeKind, Output, PluginContext
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.errors import (
    AccountPausedError,
    C123Error,
    ChargingFailedError,
    GatewayRefusedError,
    InsufficientBalanceError,
    InvalidRequestError,
    RateLimitedError,
    UnknownResultCodeError,
)
from bridge.plugins.c123.models import OutgoingSms, PlannedCall, SendResult

# A job whose payload names a template (and its {p1}..{p10} values) goes out by sendParam with
# others of that template; its text is the template rendered, as the phone will show it.
TEMPLATE = "template"
PARAMS = "params"
# The gateway publishes no rate; -1 is usually a burst, so a short pause is the right first step.
RATE_LIMIT_PAUSE = 5.0
# A low balance needs a person to top up: check again now and then, not in a tight loop.
BALANCE_HOLD = 300.0


@dataclass(slots=True)
class _Checked:
    """Jobs checked once: the messages to plan, the jobs behind each (number, text), the invalid."""

    messages: list[OutgoingSms] = field(default_factory=list)
    by_pair: dict[tuple[str, str], list[Job]] = field(default_factory=dict)
    invalid: list[tuple[Job, InvalidRequestError]] = field(default_factory=list)


def classify(error: C123Error) -> tuple[OutcomeKind, float | None]:
    """How a failed call's jobs stand, and when they are looked at again.

    The result codes stop here: the core hears pause_account, hold, retry, failed or unknown.
    """
    if error.account_fault:
        # The gate has paused the account; it says when it looks again (or resumes it sooner).
        return OutcomeKind.PAUSE_ACCOUNT, None
    if error.ambiguous:
        return OutcomeKind.UNKNOWN, None
    if isinstance(error, RateLimitedError):
        return OutcomeKind.RETRY, RATE_LIMIT_PAUSE
    if isinstance(error, InsufficientBalanceError | ChargingFailedError):
        # Only a top-up helps: wait for it without using up the job's attempts.
        return OutcomeKind.HOLD, BALANCE_HOLD
    if error.retryable:
        return OutcomeKind.RETRY, None
    return OutcomeKind.FAILED, None


def _code(error: C123Error) -> str:
    if isinstance(error, GatewayRefusedError | UnknownResultCodeError):
        return str(error.code)
    if isinstance(error, AccountPausedError):
        return error.account_fault
    return type(error).__name__


class C123Output(Output[C123Config]):
    """Sends SMS through one c123 account."""

    type_name = "c123"
    config_class = C123Config

    def __init__(self, config: C123Config, ctx: PluginContext, client: C123Client | None = None):
        super().__init__(config, ctx)
        self.client = client or C123Client(config, ctx.http, log=ctx.log)

    def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """One unit per gateway call the jobs need (invalid ones go alone, to fail alone)."""
        checked = self._check(jobs)
        units: list[list[Job]] = [[job] for job, _ in checked.invalid]
        for call in self.client.plan_checked(checked.messages):
            unit = [
                job for m in call.messages for job in checked.by_pair.pop((m.number, m.text), [])
            ]
            if unit:
                units.append(unit)
        return units

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        checked = self._check(jobs)
        outcomes: dict[int, Outcome] = {
            job.id: Outcome(job.id, OutcomeKind.FAILED, str(exc), code="invalid")
            for job, exc in checked.invalid
        }
        for call in self.client.plan_checked(checked.messages):
            try:
                result = await self.client.send_planned(call)
            except C123Error as exc:
                self._record_failure(call, exc, checked.by_pair, outcomes)
                continue
            self._record_success(call, result, checked.by_pair, outcomes)
        return [outcomes[job.id] for job in jobs]

    def _check(self, jobs: Sequence[Job]) -> _Checked:
        """Check every job once; jobs that come to the same message share it."""
        checked = _Checked()
        for job in jobs:
            try:
                message = self.client.outgoing(
                    job.recipient,
                    job.text,
                    template=str(job.payload.get(TEMPLATE, "")),
                    params=job.payload.get(PARAMS),
                )
            except InvalidRequestError as exc:
                checked.invalid.append((job, exc))
                continue
            pair = (message.number, message.text)
            if pair not in checked.by_pair:
                checked.messages.append(message)
            checked.by_pair.setdefault(pair, []).append(job)
        return checked

    def _record_success(
        self,
        call: PlannedCall,
        result: SendResult,
        by_pair: dict[tuple[str, str], list[Job]],
        outcomes: dict[int, Outcome],
    ) -> None:
        billed = result.billed()
        for message in call.messages:
            segments, cost = billed[message.number]
            for index, job in enumerate(by_pair[(message.number, message.text)]):
                # Jobs that came to the same SMS share it: the first carries what it cost.
                first = index == 0
                outcomes[job.id] = Outcome(
                    job.id,
                    OutcomeKind.SENT,
                    ref=result.msgid_for(message.number),
                    segments=segments if first else 0,
                    cost=cost if first else Decimal(0),
                )

    def _record_failure(
        self,
        call: PlannedCall,
        error: C123Error,
        by_pair: dict[tuple[str, str], list[Job]],
        outcomes: dict[int, Outcome],
    ) -> None:
        kind, after = classify(error)
        if kind is OutcomeKind.PAUSE_ACCOUNT:
            after = self.client.gate.hold_for()
        for message in call.messages:
            for job in by_pair[(message.number, message.text)]:
                outcomes[job.id] = Outcome(
                    job.id, kind, str(error), retry_after=after, code=_code(error)
                )
