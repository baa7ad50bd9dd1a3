"""Prints command results: readable lines on a terminal, one JSON document with --json.

Results carry text from outside (labels, SMS replies): nothing here writes a control character
raw, so a listing can never move the cursor, recolour or retitle the terminal reading it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TextIO

from bridge.text import terminal_safe, terminal_safe_json


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {key: _plain(item) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    # Money stays exact and ids stay strings: scripts must not see them as floats.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def emit_json(document: Any, stream: TextIO | None = None) -> None:
    """Write one JSON document (Decimals and ids as strings) and a newline."""
    stream = stream or sys.stdout
    text = json.dumps(_plain(document), ensure_ascii=False, indent=2)
    stream.write(terminal_safe_json(text) + "\n")


def emit_lines(lines: list[str], stream: TextIO | None = None) -> None:
    """Write human-readable lines, each control character in them shown escaped (`\\x1b`)."""
    stream = stream or sys.stdout
    for line in lines:
        stream.write(terminal_safe(line) + "\n")
