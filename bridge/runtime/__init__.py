"""The running daemon: lifecycle, settings, HTTP server, health and systemd."""

from bridge.runtime import health, memory
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import SMS_OUTPUT, Settings, load_settings
from bridge.runtime.systemd import Notifier
from bridge.runtime.wakeups import announce

__all__ = [
    "SMS_OUTPUT",
    "Daemon",
    "Notifier",
    "Settings",
    "announce",
    "health",
    "load_settings",
    "memory",
]
