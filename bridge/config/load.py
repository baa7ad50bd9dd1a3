"""Read a config file into a validated model, or raise one `ConfigError` listing every problem."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from bridge.config.errors import ConfigError, Issue, os_reason
from bridge.config.loader import load_yaml
from bridge.config.validate import validate

M = TypeVar("M", bound=BaseModel)


def read_config_file(path: Path) -> str:
    """The file's text, or a ConfigError that says why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"cannot read the file: not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        message = f"cannot read the file: {os_reason(exc)}"
    raise ConfigError([Issue((), message, None, None, str(path))])


def load_config_text(
    text: str,
    file_name: str,
    model_type: type[M],
    base_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
) -> M:
    """Load and validate config text; `file_name` is only used to name places in errors."""
    document = load_yaml(text, file_name, environ)
    return validate(document, model_type, base_dir=base_dir)


def load_config(path: Path, model_type: type[M], *, environ: Mapping[str, str] | None = None) -> M:
    """Load and validate a config file; relative paths in it are taken from its directory."""
    text = read_config_file(path)
    return load_config_text(text, str(path), model_type, path.absolute().parent, environ=environ)
