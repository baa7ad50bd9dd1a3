"""Message history on the command line: `messages`, `queue`, `incidents`, beside a daemon."""

from bridge.commands.history.commands import register

__all__ = ["register"]
