"""Typed results of c123 calls: ids as strings, money as Decimal, times as aware datetimes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Action(StrEnum):
    """The gateway's actions, each bound to the endpoint that serves it."""

    SEND_ONCE = "sendOnce"
    SEND_BATCH = "sendBatch"
    SEND_PARAM = "sendParam"
    GET_SEND_STATE = "getSendState"
    GET_REPLY = "getReply"
    GET_BALANCE = "getBalance"
    UPDATE_KEY = "updateKey"

    @property
    def path(self) -> str:
        if self in (Action.GET_SEND_STATE, Action.GET_REPLY):
            return "/DataPlatform/DataApi"
        return "/OpenPlatform/OpenApi"

    @property
    def is_send(self) -> bool:
        return self in (Action.SEND_ONCE, Action.SEND_BATCH, Action.SEND_PARAM)


class DeliveryStatus(StrEnum):
    """Where a message stands, decided by the carrier code (the numeric result is only a hint)."""

    DELIVERED = "delivered"
    PENDING = "pending"
    FAILED = "failed"
    UNKNOWN = "unknown"


CARRIER_CODES: dict[str, tuple[DeliveryStatus, str]] = {
    "DELIVRD": (DeliveryStatus.DELIVERED, "delivered"),
    "ACCEPTD": (DeliveryStatus.PENDING, "accepted, waiting to be sent"),
    "EXPIRED": (DeliveryStatus.FAILED, "validity period expired"),
    "DELETED": (DeliveryStatus.FAILED, "deleted"),
    "UNDELIV": (DeliveryStatus.FAILED, "undeliverable"),
    "REJECTD": (DeliveryStatus.FAILED, "rejected by the SMS centre"),
    "DTBLACK": (DeliveryStatus.FAILED, "number is blacklisted"),
    "DTWORDS": (DeliveryStatus.FAILED, "content filtered"),
    "DTFAILD": (DeliveryStatus.FAILED, "failed, reason unknown"),
    "UNKNOWN": (DeliveryStatus.UNKNOWN, "state unknown"),
    "ERRBUSY": (DeliveryStatus.UNKNOWN, "carrier busy, state unknown"),
}


def delivery_status(carrier_code: str, result: str) -> DeliveryStatus:
    """Status from the carrier code; an unlisted code falls back to the numeric hint."""
    known = CARRIER_CODES.get(carrier_code.strip().upper())
    if known is not None:
        return known[0]
    return {"2": DeliveryStatus.DELIVERED, "1": DeliveryStatus.FAILED}.get(
        result.strip(), DeliveryStatus.UNKNOWN
    )


@dataclass(frozen=True, slots=True)
class SentItem:
    """One `Item` of a send answer: a message id and what the gateway billed for it."""

    msgid: str
    segments: int
    price: Decimal
    remain: Decimal
    enterprise_id: str
    employee_id: str


@dataclass(frozen=True, slots=True)
class SendResult:
    """The answer to one send call, with the numbers it covered in the order sent."""

    action: Action
    numbers: tuple[str, ...]
    items: tuple[SentItem, ...]

    @property
    def segments(self) -> int:
        return sum(item.segments for item in self.items)

    @property
    def cost(self) -> Decimal:
        return sum((item.price * item.segments for item in self.items), Decimal(0))

    @property
    def remain(self) -> Decimal | None:
        return min((item.remain for item in self.items), default=None)

    def billed(self) -> dict[str, tuple[int, Decimal]]:
        """Segments and cost the gateway billed per number.

        sendOnce answers one `total` for every number of the task (one text, so the same count
        for each): it is shared out evenly, any remainder to the first numbers.
        """
        if len(self.items) == 1 and len(self.numbers) > 1:
            item = self.items[0]
            each, extra = divmod(item.segments, len(self.numbers))
            shares = [each + (index < extra) for index in range(len(self.numbers))]
            return {n: (s, item.price * s) for n, s in zip(self.numbers, shares, strict=True)}
        return {
            number: (item.segments, item.price * item.segments)
            for number, item in zip(self.numbers, self.items, strict=True)
        }

    def msgid_for(self, number: str) -> str:
        """The message id that delivery reports for this number will carry."""
        if len(self.items) == 1:
            return self.items[0].msgid
        return self.items[self.numbers.index(number)].msgid


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One delivery report, matched to its message by (msgid, mobile)."""

    msgid: str
    mobile: str
    result: str
    carrier_code: str

    @property
    def status(self) -> DeliveryStatus:
        return delivery_status(self.carrier_code, self.result)

    @property
    def description(self) -> str:
        known = CARRIER_CODES.get(self.carrier_code.strip().upper())
        return known[1] if known else f"carrier code {self.carrier_code or '(none)'}"


@dataclass(frozen=True, slots=True)
class InboundReply:
    """One SMS a phone sent back to the account."""

    mobile: str
    content: str
    time: datetime | None  # None when the gateway's time could not be read
    raw_time: str
    msgid: str = ""


@dataclass(frozen=True, slots=True)
class Balance:
    """The account's balance in yuan."""

    remain: Decimal
    enterprise_id: str
    employee_id: str


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """The new key issued by updateKey; the old one stopped working when it was issued."""

    enterprise_id: str
    employee_id: str
    authkey: str

    def __repr__(self) -> str:
        return (
            f"KeyRotation(enterprise_id={self.enterprise_id!r}, "
            f"employee_id={self.employee_id!r}, authkey='<secret>')"
        )


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """One text to one number, with the bridge's estimate of what it costs (the gateway bills)."""

    number: str
    text: str  # as the phone shows it (a sendParam template's, rendered)
    estimated_segments: int
    estimated_cost: Decimal
    # From a sendParam template: the template and this number's values of {p1}..{p10}.
    template: str = ""
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One gateway call a send was split into: sendOnce for one text, sendBatch for many,
    sendParam for messages of one template."""

    action: Action
    messages: tuple[OutgoingSms, ...]

    @property
    def numbers(self) -> tuple[str, ...]:
        return tuple(message.number for message in self.messages)

    @property
    def estimated_segments(self) -> int:
        return sum(message.estimated_segments for message in self.messages)

    @property
    def estimated_cost(self) -> Decimal:
        return sum((message.estimated_cost for message in self.messages), Decimal(0))
