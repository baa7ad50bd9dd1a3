"""WeCom (企业微信): group robot posts out; a self-built app's commands in and messages out."""

from bridge.plugins.wecom.app_output import WecomAppOutput
from bridge.plugins.wecom.config import (
    WecomAppInputConfig,
    WecomAppOutputConfig,
    WecomOutputConfig,
)
from bridge.plugins.wecom.crypto import CallbackError, DecryptError, decrypt, msg_signature
from bridge.plugins.wecom.input import WecomAppInput
from bridge.plugins.wecom.output import WecomOutput, split_bytes

__all__ = [
    "CallbackError",
    "DecryptError",
    "WecomAppInput",
    "WecomAppInputConfig",
    "WecomAppOutput",
    "WecomAppOutputConfig",
    "WecomOutput",
    "WecomOutputConfig",
    "decrypt",
    "msg_signature",
    "split_bytes",
]
