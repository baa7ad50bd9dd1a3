"""What flows through the pipeline: Event (something happened) and Intent (something to send)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """What sort of thing happened."""

    ALERT = "alert"  # a monitoring alert, firing or resolved
    COMMAND = "command"  # a chat command
    REPLY = "reply"  # an SMS a phone sent back
    DELIVERY = "delivery"  # a delivery report for an SMS we sent
    SYSTEM = "system"  # smsbridge itself: low balance, a gateway failing


class Status(StrEnum):
    """An alert's state; events that are not alerts are simply firing."""

    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Conversation:
    """Where an answer should go back: an output instance, and a channel and thread in it."""

    output: str
    channel: str = ""
    thread: str = ""

    def to_json(self) -> dict[str, str]:
        return {"output": self.output, "channel": self.channel, "thread": self.thread}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Conversation:
        return cls(
            output=str(data["output"]),
            channel=str(data.get("channel", "")),
            thread=str(data.get("thread", "")),
        )


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Names one occurrence of an alert across deliveries (Alertmanager: its fingerprint,
    startsAt and status): it is taken once within `window` seconds, whichever delivery, HA
    peer or instance brought it, so peers whose payloads hold different alerts page once."""

    key: str
    window: float


@dataclass(frozen=True, slots=True)
class Event:
    """One normalised thing that happened, whichever input it came from."""

    kind: EventKind
    source: str  # the input instance's name
    labels: Mapping[str, str] = field(default_factory=dict)
    text: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)  # the parsed payload, for templates
    fingerprint: str = ""  # identifies "the same alert" across notifications
    status: Status = Status.FIRING
    conversation: Conversation | None = None
    received_at: datetime = field(default_factory=_now)
    once: Occurrence | None = None  # not stored: the input sets it again when it parses

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form, for the store and for `smsbridge route`."""
        return {
            "kind": self.kind.value,
            "source": self.source,
            "labels": dict(self.labels),
            "text": self.text,
            "data": self.data,
            "fingerprint": self.fingerprint,
            "status": self.status.value,
            "conversation": self.conversation.to_json() if self.conversation else None,
            "received_at": self.received_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        """The inverse of to_json; raises KeyError or ValueError on a malformed document."""
        conversation = data.get("conversation")
        received = data.get("received_at")
        return cls(
            kind=EventKind(data["kind"]),
            source=str(data.get("source", "")),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
            text=str(data.get("text", "")),
            data=dict(data.get("data") or {}),
            fingerprint=str(data.get("fingerprint", "")),
            status=Status(data.get("status", Status.FIRING)),
            conversation=Conversation.from_json(conversation) if conversation else None,
            received_at=datetime.fromisoformat(received) if received else _now(),
        )


@dataclass(frozen=True, slots=True)
class Intent:
    """Something a rule decided to send: a text for one recipient through one output."""

    output: str  # the output instance's name
    recipient: str  # a normalised number for SMS; a channel or URL for other outputs ('' = default)
    text: str
    rule: str  # the rule that decided it, for logs, metrics and `route`
    event: Event  # what it answers; replies and reports carry its context back
    conversation: Conversation | None = None  # where replies to this SMS should go
    retry_ambiguous: bool = True  # resend when the gateway may or may not have sent it
    payload: Mapping[str, Any] = field(default_factory=dict)  # output-specific extras


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """An SMS a phone sent back, as a reply source hands it to the core."""

    mobile: str
    text: str
    time: str  # ISO 8601 when known, else the gateway's raw value
    raw_time: str  # the gateway's own value: part of the record's identity
    ref: str = ""  # the gateway's id of the SMS it answers, when it says

    def to_json(self) -> dict[str, str]:
        return {
            "mobile": self.mobile,
            "text": self.text,
            "time": self.time,
            "raw_time": self.raw_time,
            "ref": self.ref,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplyRecord:
        return cls(
            mobile=str(data["mobile"]),
            text=str(data["text"]),
            time=str(data.get("time", "")),
            raw_time=str(data.get("raw_time", "")),
            ref=str(data.get("ref", "")),
        )


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A delivery report for an SMS we sent, matched to it by (ref, mobile)."""

    ref: str  # the gateway's id of the message (msgid)
    mobile: str
    status: str  # delivered / failed / unknown
    carrier_code: str = ""  # the carrier's own code (DELIVRD, UNDELIV, ...)
    description: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "ref": self.ref,
            "mobile": self.mobile,
            "status": self.status,
            "carrier_code": self.carrier_code,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportRecord:
        return cls(
            ref=str(data["ref"]),
            mobile=str(data["mobile"]),
            status=str(data["status"]),
            carrier_code=str(data.get("carrier_code", "")),
            description=str(data.get("description", "")),
        )
