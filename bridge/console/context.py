"""What the console is given by the daemon: the store, the engine's paging, the live config."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from bridge.commands.dryrun import DryRunSettings
from bridge.intake import Pipeline
from bridge.metrics import Metrics
from bridge.store import Store

if TYPE_CHECKING:  # the simulator is imported only when it stands in for a gateway
    from bridge.plugins.c123.simulator import GatewayState


class Changes(Protocol):
    """News of changes across instances on a shared database (the daemon's wake-ups)."""

    def changed(self) -> None:
        """Tell every instance's open pages that something they show changed."""
        ...

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on each change heard, this instance's own included; returns the
        unsubscribe."""
        ...


class ConsoleSettings(DryRunSettings, Protocol):
    """The loaded config as the console reads it (the daemon's Settings, swapped on reload)."""

    @property
    def inputs(self) -> Mapping[str, tuple[type[Any], BaseModel]]: ...
    @property
    def outputs(self) -> Mapping[str, tuple[type[Any], BaseModel]]: ...


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    store: Store
    pipeline: Pipeline  # its paging acts on incidents; its wake starts the dispatcher
    settings: Callable[[], ConsoleSettings]  # the config in force now
    metrics: Metrics
    sms_output: str  # the gateway's output name (budget, balance)
    clock: Callable[[], float]
    log: Any
    simulator: GatewayState | None = None  # the built-in gateway, for /console/phones
    poll_replies: Callable[[], Awaitable[None]] | None = None  # fetch replies now
    # None on SQLite: one daemon owns the file, and the live pages watch the file itself.
    changes: Changes | None = None
