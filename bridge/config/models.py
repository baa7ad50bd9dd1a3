"""The whole config file: one model per top-level section."""

from __future__ import annotations

from bridge.config import ConfigModel
from bridge.plugins.c123.config import C123Config


class Config(ConfigModel):
    """smsbridge's config; every section is optional and an empty file is valid."""

    gateway: C123Config | None = None  # none: a built-in simulator stands in for the gateway
