"""From accepted events to durable jobs: rules applied, storm control, chat commands, replies."""

from bridge.intake import conversations, storm
from bridge.intake.chatops import ChatOps
from bridge.intake.conversations import ConversationSettings
from bridge.intake.pipeline import STORM, Pipeline, StormSettings
from bridge.intake.processor import Processor
from bridge.intake.replies import RecordIntake

__all__ = [
    "STORM",
    "ChatOps",
    "ConversationSettings",
    "Pipeline",
    "Processor",
    "RecordIntake",
    "StormSettings",
    "conversations",
    "storm",
]
