"""Every key a config model accepts, as dotted paths; the README reference is tested against it."""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from datetime import timedelta
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo


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


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Each field's comment in the source: the one after it, else the lines above it.

    Inherited fields are looked up in the class that declares them.
    """
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel:
            found.update(_declared_comments(cls))
    return found


def _declared_comments(model: type[BaseModel]) -> dict[str, str]:
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    above: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = _FIELD.match(line)
        if match:
            trailing = match.group(2).split("  # ", 1)[1] if "  # " in match.group(2) else ""
            found[match.group(1)] = (trailing or " ".join(above)).strip()
        above = []
    return found


_FIELD = re.compile(r"^    ([a-z_][a-z0-9_]*)\s*:(.*)$")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value == {} or value == []:
        return ""
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    if value == "":
        return '`""`'
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    return f"`{value}`" if isinstance(value, str) else str(value)


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


def rows(model: type[BaseModel], prefix: str) -> list[str]:
    """Markdown table rows for every key of a model, nested models included."""
    comments = _comments(model)
    out: list[str] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}.{key}"
        nested = [inner for _, inner in _models(field.annotation)]
        text = comments.get(name, "") or (_first_line(nested[0].__doc__) if nested else "")
        text = text.replace("|", "\\|")
        out.append(f"| `{path}` | {_default(field)} | {text} |")
        for suffix, inner in _models(field.annotation):
            out.extend(rows(inner, path + suffix))
    return out


def plugin_reference(registry: Any) -> str:
    """The README's generated part: one table per installed adapter type."""
    parts: list[str] = []
    for group, loader, kind in (
        ("inputs", registry.input_type, "input"),
        ("outputs", registry.output_type, "output"),
    ):
        for name in sorted(getattr(registry, group)):
            if name == "c123":
                continue  # the built-in `sms` output, configured by the gateway: section
            cls = loader(name)
            doc = (cls.config_class.__doc__ or "").strip().splitlines()[0]
            parts.append(f"`type: {name}` {kind}: {doc}\n")
            parts.append("| key | default | what it does |\n| --- | --- | --- |")
            parts.append("\n".join(rows(cls.config_class, f"{group}.<name>")) + "\n")
    return "\n".join(parts)


START = "<!-- generated by python -m bridge.config.reference: adapter options -->"
END = "<!-- end of generated adapter options -->"


def main() -> None:
    """Rewrite the generated part of README.md (given as the only argument) in place."""
    from pathlib import Path

    from bridge.plugin.registry import Registry

    path = Path(sys.argv[1])
    text = path.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{START}\n\n{plugin_reference(Registry.discover())}\n{END}{tail}")


if __name__ == "__main__":
    main()
