"""An example smsbridge plugin: `example_echo` (input) and `example_log` (output)."""

from smsbridge_example_plugin.echo import EchoConfig, EchoInput
from smsbridge_example_plugin.log import LogConfig, LogOutput

__all__ = ["EchoConfig", "EchoInput", "LogConfig", "LogOutput"]
