"""Every key a config model accepts, as dotted paths; the README reference is tested against it."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def _models(annotation: Any) -> list[tuple[str, Any]]:
    """(suffix, model) pairs reachable from an annotation: `.<name>` in dicts, `[]` in lists."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return [pair for arg in get_args(annotation) for pair in _models(arg)]
    if origin is not None and getattr(origin, "__name__", "") == "Annotated":
        return _models(get_args(annotation)[0])
    if origin is dict:
        return [(".<name>" + suffix, model) for suffix, model in _models(get_args(annotation)[1])]
    if origin in (list, tuple):
        return [("[]" + suffix, model) for suffix, model in _models(get_args(annotation)[0])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    return []


def key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path of a model, e.g. `server.listen`, `contacts.<name>.number`, `rules[].name`."""
    paths: list[str] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}.{key}" if prefix else key
        paths.append(path)
        for suffix, inner in _models(field.annotation):
            paths.extend(key_paths(inner, path + suffix))
    return sorted(set(paths))
