"""DingTalk (钉钉): `sms` commands from an enterprise robot in, custom robot messages out."""

from bridge.plugins.dingtalk.config import DingTalkInputConfig, DingTalkOutputConfig, Robot
from bridge.plugins.dingtalk.input import DingTalkInput
from bridge.plugins.dingtalk.output import DingTalkError, DingTalkOutput
from bridge.plugins.dingtalk.signing import check, sign, signed_query

__all__ = [
    "DingTalkError",
    "DingTalkInput",
    "DingTalkInputConfig",
    "DingTalkOutput",
    "DingTalkOutputConfig",
    "Robot",
    "check",
    "sign",
    "signed_query",
]
