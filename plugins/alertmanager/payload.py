"""Alertmanager's webhook payload, version 4: its models, and the Events and dedupe key it makes."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.events import Event, EventKind, Occurrence, Status
from bridge.plugin import LazyEvents, Parsed, Rejected, sha256_hex, validation_message

VERSION = "4"


class _Model(BaseModel):
    # Strict: a label value of 5 is a sender bug worth naming, not something to coerce silently.
    # Extra keys are ignored: newer Alertmanagers may add fields; the raw dicts keep them.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Alert(_Model):
    """One alert of the group. Only status and labels are required: a page must not be refused
    over a timestamp or URL it does not need."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: str = Field("", alias="startsAt")
    ends_at: str = Field("", alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = ""

    def key(self) -> str:
        """Alertmanager's fingerprint, or a stable stand-in made from the sorted labels."""
        return self.fingerprint or sha256_hex(sorted(self.labels.items()))[:16]


class Payload(_Model):
    """The whole notification for one group (`notify/webhook/webhook.go` Message)."""

    version: str
    group_key: str = Field(alias="groupKey")
    truncated_alerts: Annotated[int, Field(ge=0)] = Field(0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field({}, alias="groupLabels")
    common_labels: dict[str, str] = Field({}, alias="commonLabels")
    common_annotations: dict[str, str] = Field({}, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    # Each alert is validated on its own (`split`): one bad alert must not refuse the group,
    # since Alertmanager never retries a 4xx and the good alerts would be lost with it.
    alerts: list[Any]

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != VERSION:
            raise ValueError(f"unsupported version {value[:20]!r}; expected {VERSION!r}")
        return value

    def split(self) -> tuple[list[tuple[Alert, dict[str, Any]]], list[Rejected]]:
        """The alerts that validate (with their raw dicts), and why each other one does not."""
        good: list[tuple[Alert, dict[str, Any]]] = []
        rejected: list[Rejected] = []
        for index, raw in enumerate(self.alerts):
            try:
                good.append((Alert.model_validate(raw), raw))
            except ValidationError as exc:
                rejected.append(Rejected(index, validation_message(exc, at=("alerts", index))))
        return good, rejected

    def dedupe_key(self, source: str, alerts: list[Alert]) -> str:
        """Names this delivery, so retries and HA peers' copies are taken once.

        startsAt is part of it: an alert that resolves and fires again inside the window is a
        new page, while a repeat_interval re-notification of the same firing is not.
        """
        keys = sorted((alert.key(), alert.status, alert.starts_at) for alert in alerts)
        return sha256_hex("alertmanager", source, self.group_key, self.status, keys)

    def parse(self, source: str, window: float = 0.0) -> tuple[Parsed, str]:
        """One Event per usable alert, and the delivery's dedupe key.

        The events are made when first read (by the processor, after the answer); which alerts
        are usable, and the key, are decided now.
        """
        good, rejected = self.split()
        events = LazyEvents(len(good), partial(self.events, source, window, good))
        return Parsed(events, rejected), self.dedupe_key(source, [alert for alert, _ in good])

    def events(
        self, source: str, window: float, good: list[tuple[Alert, dict[str, Any]]]
    ) -> list[Event]:
        """The usable alerts' events.

        With a `window`, each event names its occurrence (fingerprint, startsAt, status), taken
        once within the window: HA peers' payloads for one group may hold different alerts, so
        a delivery-wide key alone would page the alerts they share twice.
        The raw dicts keep any fields newer Alertmanagers add.
        """
        group = {
            "groupKey": self.group_key,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "truncatedAlerts": self.truncated_alerts,
        }
        return [
            Event(
                kind=EventKind.ALERT,
                source=source,
                labels=dict(alert.labels),
                text=alert.annotations.get("summary") or alert.annotations.get("description", ""),
                data={"alert": raw_alert, "annotations": dict(alert.annotations), "group": group},
                fingerprint=alert.key(),
                status=Status(alert.status),
                once=Occurrence(sha256_hex(alert.key(), alert.starts_at, alert.status), window)
                if window
                else None,
            )
            for alert, raw_alert in good
        ]
