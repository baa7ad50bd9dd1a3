"""Config loading: line-aware YAML, strict pydantic models, and one report listing every problem."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bridge.config.errors import ConfigError, ConfigPath, Issue, format_path, os_reason
from bridge.config.load import load_config, load_config_text, read_config_file
from bridge.config.loader import Document, Mark, load_yaml
from bridge.config.salvage import salvage
from bridge.config.types import (
    BASE_DIR,
    BaseUrl,
    Duration,
    FilePath,
    HttpUrl,
    PositiveDuration,
    Secret,
    SecretFile,
    TimeZoneName,
    expected,
    parse_duration,
)
from bridge.config.validate import (
    issue_at,
    validate,
    validate_at,
    validation_issues,
)


class ConfigModel(BaseModel):
    """Base for config models: unknown keys are errors, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = [
    "BASE_DIR",
    "BaseUrl",
    "ConfigError",
    "ConfigModel",
    "ConfigPath",
    "Document",
    "Duration",
    "FilePath",
    "HttpUrl",
    "Issue",
    "Mark",
    "PositiveDuration",
    "Secret",
    "SecretFile",
    "TimeZoneName",
    "expected",
    "format_path",
    "issue_at",
    "load_config",
    "load_config_text",
    "load_yaml",
    "os_reason",
    "parse_duration",
    "read_config_file",
    "salvage",
    "validate",
    "validate_at",
    "validation_issues",
]
