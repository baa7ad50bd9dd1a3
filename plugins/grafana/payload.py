"""Grafana's webhook payload, version 1: its models, and the Events and dedupe key it makes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.events import Event, EventKind, Status
from bridge.plugin import sha256_hex, validation_message

VERSION = "1"


class PayloadError(ValueError):
    """A parsed body that is not a Grafana version-1 payload; the message is the 422 answer."""


class _Model(BaseModel):
    # Strict: a label value of 5 is a sender bug worth naming, not something to coerce silently.
    # Extra keys are ignored: newer Grafanas add fields (ruleUID, enrichments); raw dicts keep them.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class GrafanaAlert(_Model):
    """One alert of the group; only status and labels are required, as for Alertmanager."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: str = Field("", alias="startsAt")
    ends_at: str = Field("", alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = ""
    silence_url: str = Field("", alias="silenceURL")
    dashboard_url: str = Field("", alias="dashboardURL")
    panel_url: str = Field("", alias="panelURL")
    image_url: str = Field("", alias="imageURL")
    # refId -> number; Grafana sends null when the rule has none. Kept as sent, for templates.
    values: dict[str, Any] | None = None
    value_string: str = Field("", alias="valueString")

    def key(self) -> str:
        """Grafana's fingerprint, or a stable stand-in made from the sorted labels."""
        return self.fingerprint or sha256_hex(sorted(self.labels.items()))[:16]

    def urls(self) -> dict[str, str]:
        return {
            "generator": self.generator_url,
            "silence": self.silence_url,
            "dashboard": self.dashboard_url,
            "panel": self.panel_url,
            "image": self.image_url,
        }


class GrafanaPayload(_Model):
    """The whole notification for one group (grafana/alerting `receivers/webhook` v1)."""

    version: str
    group_key: str = Field(alias="groupKey")
    status: Literal["firing", "resolved"]
    alerts: list[GrafanaAlert]
    truncated_alerts: Annotated[int, Field(ge=0)] = Field(0, alias="truncatedAlerts")
    receiver: str = ""
    org_id: int = Field(0, alias="orgId")
    group_labels: dict[str, str] = Field({}, alias="groupLabels")
    common_labels: dict[str, str] = Field({}, alias="commonLabels")
    common_annotations: dict[str, str] = Field({}, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    title: str = ""
    state: str = ""  # "alerting" when any alert fires, else "ok"
    message: str = ""

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != VERSION:
            raise ValueError(f"unsupported version {value[:20]!r}; expected {VERSION!r}")
        return value

    def dedupe_key(self, source: str) -> str:
        """Names this delivery, as for Alertmanager: group, status, and each alert's key,
        status and start, so a retry is taken once but an alert that fires again is not."""
        alerts = sorted((alert.key(), alert.status, alert.starts_at) for alert in self.alerts)
        return sha256_hex("grafana", source, self.group_key, self.status, alerts)

    def events(self, raw: dict[str, Any], source: str) -> list[Event]:
        """One Event per alert; `raw` is the parsed body, whose dicts keep any unknown fields."""
        group = {
            "groupKey": self.group_key,
            "status": self.status,
            "receiver": self.receiver,
            "orgId": self.org_id,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "truncatedAlerts": self.truncated_alerts,
            "title": self.title,
            "state": self.state,
            "message": self.message,
        }
        return [
            Event(
                kind=EventKind.ALERT,
                source=source,
                labels=dict(alert.labels),
                text=alert.annotations.get("summary") or alert.annotations.get("description", ""),
                data={
                    "alert": raw_alert,
                    "annotations": dict(alert.annotations),
                    "values": dict(alert.values or {}),
                    "valueString": alert.value_string,
                    "urls": alert.urls(),
                    "group": group,
                },
                fingerprint=alert.key(),
                status=Status(alert.status),
            )
            for alert, raw_alert in zip(self.alerts, raw["alerts"], strict=True)
        ]


def read_payload(raw: Any) -> GrafanaPayload:
    """The parsed body as a payload, or a PayloadError naming the first problem."""
    if not isinstance(raw, dict):
        raise PayloadError("the body: expected an object")
    try:
        return GrafanaPayload.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(validation_message(exc)) from None
