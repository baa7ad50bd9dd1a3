"""Reload: load and start the new config first, then swap; a bad one keeps the old running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.config import ConfigError
from bridge.metrics import Metrics
from bridge.runtime.adapters import Adapters
from bridge.runtime.configure import register_settings_secrets
from bridge.runtime.settings import Settings, load_settings

# Sections a reload does not apply: they take effect on restart.
RESTART_SECTIONS = ("server", "store", "gateway", "polling")


async def reload(
    current: Settings,
    *,
    start: Callable[[Settings], Awaitable[Adapters]],
    swap: Callable[[Settings, Adapters], Awaitable[Adapters]],
    stop_replaced: Callable[[Adapters], Awaitable[None]],
    metrics: Metrics,
    log: Any,
    clock: Callable[[], float],
) -> bool:
    """Reload `current`'s file: start its adapters, `swap` them in, stop what they replaced."""
    try:
        settings = await asyncio.to_thread(load_settings, current.path, registry=current.registry)
    except ConfigError as exc:
        metrics.reload_success.set(0)
        log.error("reload_failed", problems=[i.render() for i in exc.issues])
        return False
    try:
        adapters = await start(settings)
    except Exception:
        metrics.reload_success.set(0)
        log.exception("reload_failed", reason="an adapter failed to start")
        return False
    register_settings_secrets(settings)
    changed = [
        s for s in RESTART_SECTIONS if getattr(settings.config, s) != getattr(current.config, s)
    ]
    replaced = await swap(settings, adapters)
    await stop_replaced(replaced)
    if changed:
        log.warning(
            "restart_required",
            sections=changed,
            reason="these sections take effect on restart",
        )
    metrics.reload_success.set(1)
    metrics.reload_time.set(clock())
    log.info(
        "reload_done",
        inputs=sorted(adapters.inputs),
        outputs=sorted(adapters.outputs),
        rules=len(settings.rules.names),
    )
    return True
