"""A generic JSON webhook: any object (or list of objects) in, Events out by dotted paths."""

from bridge.plugins.webhook.config import FieldsConfig, HmacAuth, WebhookAuth, WebhookConfig
from bridge.plugins.webhook.input import WebhookInput, body_signature

__all__ = [
    "FieldsConfig",
    "HmacAuth",
    "WebhookAuth",
    "WebhookConfig",
    "WebhookInput",
    "body_signature",
]
