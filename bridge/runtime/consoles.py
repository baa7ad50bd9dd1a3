"""The web console wired to a running daemon (only when `console:` is configured)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from bridge.console import ConsoleContext, ConsoleServer
from bridge.intake import Pipeline
from bridge.metrics import Metrics
from bridge.runtime.settings import SMS_OUTPUT, Settings
from bridge.runtime.wakeups import Wakeups
from bridge.store import Store

if TYPE_CHECKING:  # the simulator is imported only when it stands in for a gateway
    from bridge.plugins.c123.simulator import GatewayState


async def start_console(
    settings: Callable[[], Settings],
    stack: AsyncExitStack,
    *,
    store: Store,
    pipeline: Pipeline,
    metrics: Metrics,
    clock: Callable[[], float],
    log: Any,
    simulator: GatewayState | None,
    poll_replies: Callable[[], Awaitable[None]],
    changes: Wakeups | None,
) -> ConsoleServer | None:
    """Listen on `console.listen`; stopped with `stack`, live streams first."""
    current = settings()
    config = current.config.console
    if config is None:
        return None
    context = ConsoleContext(
        store=store,
        pipeline=pipeline,
        settings=settings,
        metrics=metrics,
        sms_output=SMS_OUTPUT,
        clock=clock,
        log=log,
        simulator=simulator,
        poll_replies=poll_replies,
        changes=changes,
    )
    server = ConsoleServer(context, config)
    await server.start(current.config.server.shutdown_timeout.total_seconds())
    stack.push_async_callback(server.stop)
    log.info("console_started", url=server.url)
    return server
