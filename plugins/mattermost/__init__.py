"""Mattermost: `sms` commands from slash commands and outgoing webhooks in, thread posts out."""

from bridge.plugins.mattermost.config import MattermostInputConfig, MattermostOutputConfig
from bridge.plugins.mattermost.input import MattermostInput
from bridge.plugins.mattermost.output import MattermostOutput

__all__ = ["MattermostInput", "MattermostInputConfig", "MattermostOutput", "MattermostOutputConfig"]
