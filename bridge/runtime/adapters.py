"""A config's adapter instances: started in order with their plugin context, stopped in reverse."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.plugin import Input, Output, PluginContext
from bridge.runtime.settings import SMS_OUTPUT, Settings

Context = Callable[[str, str], PluginContext]  # (instance name, type name) -> its context


@dataclass(frozen=True, slots=True)
class Adapters:
    """The inputs and outputs of one config, by instance name."""

    inputs: dict[str, Input[Any]]
    outputs: dict[str, Output[Any]]


async def start_outputs(
    settings: Settings, sms: Output[Any], context: Context, log: Any
) -> dict[str, Output[Any]]:
    """The SMS output first, then the config's outputs, each started."""
    return {SMS_OUTPUT: sms, **await _start_each(settings.outputs, context, log)}


async def start_inputs(settings: Settings, context: Context, log: Any) -> dict[str, Input[Any]]:
    """The config's inputs, each started."""
    return await _start_each(settings.inputs, context, log)


async def _start_each(
    specs: Mapping[str, tuple[type[Any], Any]], context: Context, log: Any
) -> dict[str, Any]:
    """Start each adapter in order; when one fails, those already started are stopped again
    (a failed reload keeps the old ones and must not leave half of the new ones running)."""
    started: dict[str, Any] = {}
    try:
        for name, (cls, options) in specs.items():
            plugin = cls(options, context(name, cls.type_name))
            await plugin.start()
            started[name] = plugin
    except BaseException:
        await stop(started, log)
        raise
    return started


async def stop(adapters: Mapping[str, Any], log: Any) -> None:
    """Stop adapters in reverse order; one that fails to stop does not keep the others running."""
    for name, plugin in reversed(list(adapters.items())):
        try:
            await plugin.stop()
        except Exception:
            log.exception("adapter_stop_failed", instance=name)
