"""Building a model from what is usable in a broken config, so later checks can still run."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bridge.config.errors import ConfigPath
from bridge.config.loader import Document
from bridge.config.validate import context, data_at, document_path

M = TypeVar("M", bound=BaseModel)

# Each round removes at least one broken part; a config that needs more is given up on.
_ROUNDS = 25


def _drop(data: Any, path: ConfigPath, keep: int) -> ConfigPath | None:
    """Remove the deepest mapping key on `path` below its first `keep` parts; return its path."""
    for end in range(len(path), keep, -1):
        part, parent = path[end - 1], data_at(data, path[: end - 1])
        if isinstance(part, str) and isinstance(parent, dict) and part in parent:
            del parent[part]
            return path[:end]
    return None


def salvage(
    document: Document,
    model_type: type[M],
    stand_in: Callable[[ConfigPath, Any], Any],
    *,
    base_dir: Path | None = None,
) -> tuple[M, frozenset[ConfigPath]] | None:
    """`model_type` built from the usable parts of a document that does not validate as it is.

    For checks that should run beside the document's problems (references between sections):
    a broken key is dropped, so its default applies; a section's entry (`rules[3]`,
    `contacts.bob`) that cannot be mended that way is replaced by `stand_in(path, value)`.
    Returns the model and the paths changed (what is found there is already reported), or
    None when a whole section is unusable.
    """
    if not document.parsed:
        return None
    data = copy.deepcopy(document.data)
    changed: set[ConfigPath] = set()
    for _ in range(_ROUNDS):
        try:
            model = model_type.model_validate(data, context=context(base_dir))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        else:
            return model, frozenset(changed)
        replaced: set[ConfigPath] = set()
        for error in errors:
            path = document_path(document, model_type, error["loc"])
            if error["type"] == "missing":
                path = path[:-1]  # the mapping that lacks the key is what is broken
            if len(path) < 2 or not isinstance(data, dict):
                return None
            if path[:2] in replaced:
                continue  # its other problems went with it
            dropped = _drop(data, path, keep=2)
            if dropped is not None:
                changed.add(dropped)
                continue
            section, entry = data_at(data, path[:1]), path[1]
            if isinstance(section, dict) and isinstance(entry, str):
                section[entry] = stand_in(path[:2], section.get(entry))
            elif isinstance(section, list) and isinstance(entry, int) and entry < len(section):
                section[entry] = stand_in(path[:2], section[entry])
            else:
                return None
            replaced.add(path[:2])
            changed.add(path[:2])
    return None
