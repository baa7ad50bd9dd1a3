"""The c123 gateway as the daemon wires it: configured or a built-in simulator, pause, balance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bridge.events import Event, EventKind, Occurrence
from bridge.metrics import Metrics
from bridge.outbox import Dispatcher
from bridge.plugin import sha256_hex
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.marks import Pause
from bridge.plugins.c123.models import Action
from bridge.runtime.settings import SMS_OUTPUT, Settings
from bridge.sms import segment_count

if TYPE_CHECKING:
    from bridge.plugins.c123.simulator import Simulator, SimulatorSettings

# How long the instances remember that a pause was told (a pause has one `since` for all).
PAUSE_TOLD_ONCE = 7 * 86400.0


async def open_gateway(
    settings: Settings,
    simulator_settings: SimulatorSettings | None,
    stack: AsyncExitStack,
    log: Any,
) -> tuple[C123Config, Simulator | None]:
    """The configured gateway, or a built-in simulator (closed with `stack`) standing in."""
    gateway = settings.config.gateway
    if gateway is not None:
        return gateway, None
    options = settings.config.simulator
    # Imported only when needed: a daemon on a real gateway does not carry the simulator.
    from bridge.plugins.c123.connect import embedded_simulator
    from bridge.plugins.c123.simulator import SimulatorSettings

    chosen = simulator_settings or SimulatorSettings(
        report_delay=options.report_delay.total_seconds()
    )
    simulator, sim_config = await stack.enter_async_context(
        embedded_simulator(chosen, options.port)
    )
    log.warning(
        "gateway_simulator_embedded",
        url=simulator.url,
        reason="no gateway configured: SMS go to a built-in simulator, not to phones",
    )
    return sim_config, simulator


def segments(gateway: C123Config, output: str, text: str) -> int:
    """Segments of one SMS through the gateway, its signature included."""
    return segment_count(text, gateway.signature.text)


def observe(metrics: Metrics, action: Action, outcome: str, seconds: float) -> None:
    """Time one gateway call."""
    metrics.gateway_duration.labels(action.value, outcome).observe(seconds)


async def balance(client: C123Client) -> Decimal:
    """What remains on the gateway account."""
    return (await client.get_balance()).remain


async def report_pause(
    pause: Pause,
    *,
    metrics: Metrics,
    account: str,
    run_events: Callable[[Sequence[Event]], Awaitable[Any]],
) -> None:
    """The gateway account takes no calls: SMS are held; a system event tells operators."""
    metrics.account_paused.clear()
    metrics.account_paused.labels(pause.reason).set(1)
    event = Event(
        kind=EventKind.SYSTEM,
        source=SMS_OUTPUT,
        labels={"alertname": "SmsAccountPaused", "account": account, "reason": pause.reason},
        text=f"SMS account paused ({pause.reason}): {pause.detail}; messages are held",
        data={"reason": pause.reason, "detail": pause.detail},
        fingerprint=f"account-paused|{account}|{pause.reason}",
        # Every instance sees the pause (through the store): the operators hear of it once.
        once=Occurrence(sha256_hex(account, pause.reason, pause.since), PAUSE_TOLD_ONCE),
    )
    await run_events([event])


async def release_after_pause(metrics: Metrics, dispatcher: Dispatcher) -> None:
    """The account takes calls again: the SMS held for it go."""
    metrics.account_paused.clear()
    await dispatcher.release_held(SMS_OUTPUT)
