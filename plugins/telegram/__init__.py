"""Telegram bots: `sms` commands from a webhook in, sendMessage replies out."""

from bridge.plugins.telegram.config import TelegramInputConfig, TelegramOutputConfig
from bridge.plugins.telegram.input import TelegramInput
from bridge.plugins.telegram.output import TelegramOutput

__all__ = ["TelegramInput", "TelegramInputConfig", "TelegramOutput", "TelegramOutputConfig"]
