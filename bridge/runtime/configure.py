"""What a config gives the running engine: rules, contacts, paging, routing, commands, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bridge.events import Conversation
from bridge.intake import ChatOps, ConversationSettings, Pipeline, StormSettings
from bridge.logging import register_secrets
from bridge.metrics import Metrics
from bridge.outbox import Dispatcher, JobRecord, RetryPolicy
from bridge.plugin import ChatInputConfig, Output
from bridge.rules import Directory
from bridge.runtime.settings import SMS_OUTPUT, Settings
from bridge.store import Store

if TYPE_CHECKING:
    from bridge.paging import Silencer


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
    pipeline.paging = None
    if config.oncall is not None:
        from bridge.paging import Pager  # an optional part: loaded only when a config pages

        pipeline.paging = Pager(pipeline, config.oncall, directory, SMS_OUTPUT, silencer)
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


def dispatcher(
    settings: Settings,
    store: Store,
    outputs: Mapping[str, Output[Any]],
    *,
    metrics: Metrics,
    log: Any,
    clock: Callable[[], float],
    on_failed: Callable[[JobRecord, str], None],
    spawn: Callable[[str, Callable[[], Awaitable[None]]], asyncio.Task[None]],
    instance: str,
) -> Dispatcher:
    """The outbox's dispatcher as the config's `dispatch:` section sets it up."""
    dispatch = settings.config.dispatch
    return Dispatcher(
        store,
        outputs,
        metrics=metrics,
        log=log,
        clock=clock,
        batch_size=dispatch.batch_size,
        concurrency=dispatch.concurrency,
        retry=RetryPolicy(
            ceiling=dispatch.backoff_max.total_seconds(),
            max_attempts=dispatch.max_attempts,
            max_hold=dispatch.max_hold.total_seconds(),
        ),
        on_failed=on_failed,
        spawn=spawn,
        instance=instance,
    )


def register_settings_secrets(settings: Settings) -> None:
    """Keep every secret of a config (and its adapters' options) out of logs."""
    register_secrets([settings.config, *settings.inputs.values(), *settings.outputs.values()])
