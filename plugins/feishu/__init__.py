"""Feishu / Lark (飞书): `sms` commands from event subscriptions in, thread replies out."""

from bridge.plugins.feishu.config import FeishuInputConfig, FeishuOutputConfig
from bridge.plugins.feishu.crypto import (
    DecryptError,
    check_event,
    decrypt,
    event_signature,
    webhook_sign,
)
from bridge.plugins.feishu.input import FeishuInput, command_text
from bridge.plugins.feishu.output import FeishuError, FeishuOutput

__all__ = [
    "DecryptError",
    "FeishuError",
    "FeishuInput",
    "FeishuInputConfig",
    "FeishuOutput",
    "FeishuOutputConfig",
    "check_event",
    "command_text",
    "decrypt",
    "event_signature",
    "webhook_sign",
]
