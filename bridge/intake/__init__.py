"""From accepted events to durable jobs: rules applied, storm control, chat commands, replies."""

from bridge.intake import conversations, limits, storm
from bridge.intake.chatops import ChatOps
from bridge.intake.conversations import ConversationSettings
from bridge.intake.limits import StormSettings, day_start
from bridge.intake.pipeline import PAGING, STORM, Paging, Pipeline
from bridge.intake.processor import Processor
from bridge.intake.replies import RecordIntake

__all__ = [
    "PAGING",
    "STORM",
    "ChatOps",
    "ConversationSettings",
    "Paging",
    "Pipeline",
    "Processor",
    "RecordIntake",
    "StormSettings",
    "conversations",
    "day_start",
    "limits",
    "storm",
]
