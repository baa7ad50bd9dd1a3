"""Message history on the command line: `messages`, `queue`, `incidents`, beside a daemon."""

import bridge.commands.history.views as views
from bridge.commands.history.commands import register

__all__ = ["register", "views"]
