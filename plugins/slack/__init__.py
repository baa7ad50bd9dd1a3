"""Slack: `sms` commands from slash commands and the Events API in, thread posts out."""

from bridge.plugins.slack.config import SlackInputConfig, SlackOutputConfig
from bridge.plugins.slack.input import SlackInput
from bridge.plugins.slack.output import SlackOutput
from bridge.plugins.slack.signing import check, sign

__all__ = ["SlackInput", "SlackInputConfig", "SlackOutput", "SlackOutputConfig", "check", "sign"]
