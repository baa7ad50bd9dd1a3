"""What a config gives the running engine: rules, contacts, paging, routing, commands, limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

from bridge.events import Conversation
from bridge.intake import ChatOps, ConversationSettings, Pipeline, StormSettings
from bridge.logging import register_secrets
from bridge.paging import Pager, Silencer
from bridge.plugin import ChatInputConfig
from bridge.rules import Directory
from bridge.runtime.settings import SMS_OUTPUT, Settings


def storm_settings(settings: Settings) -> StormSettings:
    """The storm limits of a config."""
    config = settings.config
    return StormSettings(
        held_summary_after=config.storm.held_summary_after.total_seconds(),
        daily_segment_budget=config.storm.daily_segment_budget,
        budget_zone=settings.timezone,
    )


def route(pipeline: Pipeline, settings: Settings, silencer: Silencer | None = None) -> None:
    """Give the pipeline the rules, contacts and reply routing of a config."""
    config = settings.config
    directory = Directory(config.contacts, config.groups)
    default = config.conversations.default
    pipeline.rules = settings.rules
    pipeline.directory = directory
    # Incidents under way keep their stored timeline; only what comes next sees this config.
    pipeline.paging = (
        Pager(pipeline, config.oncall, directory, SMS_OUTPUT, silencer)
        if config.oncall is not None
        else None
    )
    pipeline.conversations = ConversationSettings(
        ttl=config.conversations.ttl.total_seconds(),
        reply_codes=config.conversations.reply_codes,
        default=Conversation(default.output, default.channel, default.thread) if default else None,
        report_deliveries=config.conversations.report_deliveries,
    )


def chatops(settings: Settings, balance: Callable[[], Awaitable[Decimal]]) -> ChatOps:
    """Chat commands with the contacts and per-input command policies of a config."""
    config = settings.config
    policies = {
        name: options.commands
        for name, (_, options) in settings.inputs.items()
        if isinstance(options, ChatInputConfig)
    }
    return ChatOps(Directory(config.contacts, config.groups), policies, balance)


def register_settings_secrets(settings: Settings) -> None:
    """Keep every secret of a config (and its adapters' options) out of logs."""
    register_secrets([settings.config, *settings.inputs.values(), *settings.outputs.values()])
