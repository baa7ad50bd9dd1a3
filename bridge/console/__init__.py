"""The web console: messages, incidents, queue, gateway, rules dry run, and the simulated phones."""

from bridge.console.app import ConsoleServer
from bridge.console.context import ConsoleContext, ConsoleSettings

__all__ = ["ConsoleContext", "ConsoleServer", "ConsoleSettings"]
