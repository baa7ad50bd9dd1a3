"""The JSON the smsbridge Zabbix media type posts (version 1), and the Event it becomes."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from bridge.events import Event, EventKind, Status
from bridge.plugin import sha256_hex, validation_message

# Labels the input sets itself; a Zabbix tag of the same name does not replace them.
OWN_LABELS = ("alertname", "host", "instance", "severity", "zabbix_update")


class PayloadError(ValueError):
    """A parsed body that is not the media type's JSON; the message is the 422 answer."""


def _digits_as_text(value: Any) -> Any:
    # Zabbix macros are text; a hand-written sender may send ids as JSON numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


IdText = Annotated[str, BeforeValidator(_digits_as_text)]


class _Model(BaseModel):
    # Strict, so a wrong type is named; unknown keys ignored (kept in the Event's data).
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ZabbixTag(_Model):
    """One entry of {EVENT.TAGSJSON}."""

    tag: str
    value: str = ""


class ZabbixPayload(_Model):
    """One Zabbix event: a problem, its recovery, or an update (an acknowledgement, say)."""

    version: Literal["1"] = "1"
    event_id: IdText  # {EVENT.ID}: the problem's, in recovery too
    value: Annotated[Literal["0", "1"], BeforeValidator(_digits_as_text)] | None = None
    recovery: bool | None = None  # instead of value: true for a recovery
    update: bool = False  # {EVENT.UPDATE.STATUS} = 1: an update operation, not a state change
    name: str  # {EVENT.NAME}
    severity: str = ""  # {EVENT.SEVERITY}: Not classified, Information, ... Disaster
    host: str = ""  # {HOST.NAME}
    trigger_id: IdText = ""  # {TRIGGER.ID}
    tags: list[ZabbixTag] = []  # {EVENT.TAGSJSON}
    to: str = ""  # {ALERT.SENDTO}
    subject: str = ""  # {ALERT.SUBJECT}
    message: str = ""  # {ALERT.MESSAGE}
    time: str = ""  # {EVENT.DATE} {EVENT.TIME}
    recovery_id: IdText = ""  # {EVENT.RECOVERY.ID}
    recovery_time: str = ""  # {EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}

    @field_validator("event_id", "name")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @property
    def status(self) -> Status:
        if self.value is not None:
            return Status.FIRING if self.value == "1" else Status.RESOLVED
        return Status.RESOLVED if self.recovery else Status.FIRING

    def fingerprint(self) -> str:
        """The trigger and host, so a problem and its recovery pair up (the event id without)."""
        if self.trigger_id:
            return sha256_hex("zabbix", self.trigger_id, self.host)[:16]
        return sha256_hex("zabbix-event", self.event_id)[:16]

    def tag_values(self) -> dict[str, str]:
        """Tags as one text each; a tag given several values gets them sorted, comma-joined."""
        values: dict[str, set[str]] = {}
        for tag in self.tags:
            values.setdefault(tag.tag, set()).add(tag.value)
        return {name: ",".join(sorted(found)) for name, found in values.items()}

    def labels(self) -> dict[str, str]:
        labels = {k: v for k, v in self.tag_values().items() if k not in OWN_LABELS}
        if self.severity:
            labels["severity"] = self.severity
        if self.host:
            labels["host"] = self.host
            labels["instance"] = self.host  # so the default SMS template names the host
        if self.update:
            labels["zabbix_update"] = "1"
        labels["alertname"] = self.name
        return labels

    def dedupe_key(self, source: str) -> str:
        """The event, its state and whether it is an update; an update's message too, since
        one problem can be updated (acknowledged, commented) many times."""
        note = hashlib.sha256(self.message.encode()).hexdigest() if self.update else ""
        return sha256_hex("zabbix", source, self.event_id, self.status.value, self.update, note)

    def event(self, raw: dict[str, Any], source: str) -> Event:
        return Event(
            kind=EventKind.ALERT,
            source=source,
            labels=self.labels(),
            text=self.message or self.subject or self.name,
            data={"event": raw, "tags": self.tag_values()},
            fingerprint=self.fingerprint(),
            status=self.status,
        )


def read_payload(raw: Any) -> ZabbixPayload:
    """The parsed body as a payload, or a PayloadError naming the first problem."""
    if not isinstance(raw, dict):
        raise PayloadError("the body: expected an object")
    try:
        payload = ZabbixPayload.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(validation_message(exc)) from None
    if payload.value is None and payload.recovery is None:
        raise PayloadError('value: required: "1" (problem) or "0" (recovery), or recovery: true')
    value_for_recovery = "0" if payload.recovery else "1"
    if None not in (payload.value, payload.recovery) and payload.value != value_for_recovery:
        raise PayloadError(f"value {payload.value!r} and recovery {payload.recovery} disagree")
    return payload
