"""Grafana's webhook contact point: one Event per alert, deduplicated per delivery."""

from bridge.plugins.grafana.config import GrafanaAuth, GrafanaConfig, GrafanaHmac
from bridge.plugins.grafana.input import GrafanaInput, grafana_signature

__all__ = [
    "GrafanaAuth",
    "GrafanaConfig",
    "GrafanaHmac",
    "GrafanaInput",
    "grafana_signature",
]
