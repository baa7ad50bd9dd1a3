"""A faithful c123 gateway simulator; DEFAULT_AUTHKEY is a fixed, public key that opens it alone."""

from bridge.plugins.c123.simulator.app import Simulator, make_app, serve
from bridge.plugins.c123.simulator.config import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    DEFAULT_BALANCE,
    DEFAULT_PRICE,
    DEFAULT_SIGNATURE,
    DEFAULT_TIMEZONE,
    Fault,
    FaultKind,
    InvalidInput,
    MalformedVariant,
    SimAccount,
    SimulatorSettings,
)
from bridge.plugins.c123.simulator.state import GatewayState, SimMessage, key_digest
from bridge.plugins.c123.simulator.timing import ManualClock

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_AUTHKEY",
    "DEFAULT_BALANCE",
    "DEFAULT_PRICE",
    "DEFAULT_SIGNATURE",
    "DEFAULT_TIMEZONE",
    "Fault",
    "FaultKind",
    "GatewayState",
    "InvalidInput",
    "MalformedVariant",
    "ManualClock",
    "SimAccount",
    "SimMessage",
    "Simulator",
    "SimulatorSettings",
    "key_digest",
    "make_app",
    "serve",
]
