"""Prometheus Alertmanager's webhook receiver: one Event per alert, deduplicated per delivery."""

from bridge.plugins.alertmanager.config import (
    AlertmanagerAuth,
    AlertmanagerConfig,
    BasicCredentials,
)
from bridge.plugins.alertmanager.input import AlertmanagerInput

__all__ = ["AlertmanagerAuth", "AlertmanagerConfig", "AlertmanagerInput", "BasicCredentials"]
