"""DingTalk configs: the outgoing robot's AppSecret for the input; custom robots for the output."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field

from bridge.config import BaseUrl, ConfigModel, PositiveDuration, Secret
from bridge.plugin import ChatInputConfig, ChatOutputConfig

API_URL = "https://oapi.dingtalk.com"
# A custom robot may send 20 messages a minute; past that DingTalk mutes it for 10 minutes.
ROBOT_RATE = 20 / 60
CHAT_MAX_BODY = 256 * 1024  # protocols.md §6.6: 256 KiB is plenty for a chat message


class DingTalkInputConfig(ChatInputConfig):
    """An enterprise ("outgoing") robot that POSTs @-messages to /hooks/<name>."""

    app_secret: Secret  # the robot's AppSecret: DingTalk signs every callback with it
    # DingTalk's own window; a seen-timestamp cache makes the wide window safe (see the input).
    replay_window: PositiveDuration = timedelta(hours=1)
    max_body: Annotated[int, Field(gt=0)] = CHAT_MAX_BODY  # bytes; larger requests get 413


class Robot(ConfigModel):
    """One custom (webhook) group robot: the access_token of its URL and its 加签 secret."""

    access_token: Secret  # the access_token= value of the robot's webhook URL
    secret: Secret | None = None  # "SEC…"; None when the robot relies on keywords or IPs


class DingTalkOutputConfig(ChatOutputConfig):
    """Posts through custom robots; each robot belongs to one group.

    `access_token`/`secret` is the default robot; `robots` maps a conversationId (a channel)
    to the robot of that group, for an outgoing robot that serves several groups.
    """

    access_token: Secret  # the default robot's access_token= value (from its webhook URL)
    secret: Secret | None = None  # the default robot's 加签 secret ("SEC…"), if it has one
    robots: dict[str, Robot] = Field(default_factory=dict)
    api_url: BaseUrl = API_URL  # DingTalk's API base; /robot/send is appended (or a test fake)
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the post is retried
    # Posts a second, shared by all the robots; past 20 a minute DingTalk mutes a robot.
    rate_limit: Annotated[float, Field(gt=0)] = ROBOT_RATE
    # DingTalk has no threads: answers @-mention the person whose command they answer.
    mention_sender: bool = True

    def robot(self, channel: str) -> Robot:
        """The robot that posts into `channel`; the default one for any other channel."""
        return self.robots.get(channel) or Robot(access_token=self.access_token, secret=self.secret)
