"""The c123 SMS gateway: wire client, output, reply and report polling, simulator."""

from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.output import C123Output

__all__ = ["C123Client", "C123Config", "C123Output"]
