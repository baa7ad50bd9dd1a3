"""Validate loaded config with pydantic; turn its errors into positioned, plain-worded issues."""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Secret, SecretBytes, SecretStr, Tag, ValidationError
from pydantic_core import ErrorDetails

from bridge.config.errors import ConfigError, ConfigPath, Issue
from bridge.config.loader import Document
from bridge.config.types import BASE_DIR, EXPECTED

M = TypeVar("M", bound=BaseModel)

_SECRET_WORDS = ("key", "secret", "token", "password")
MISSING = object()
_EXPECTED_BY_TYPE = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "iterable_type": "a list",
    "timedelta_type": "a duration",
    "timedelta_parsing": "a duration",
}
_EXPECTED_BY_LIMIT = {
    "greater_than": "a value greater than {gt}",
    "greater_than_equal": "a value of at least {ge}",
    "less_than": "a value less than {lt}",
    "less_than_equal": "a value of at most {le}",
    "string_too_short": "at least {min_length} character(s)",
    "string_too_long": "at most {max_length} character(s)",
    "too_short": "at least {min_length} item(s)",
    "too_long": "at most {max_length} item(s)",
    "string_pattern_mismatch": "text matching '{pattern}'",
    "literal_error": "{expected}",
    "enum": "{expected}",
    EXPECTED: "{what}",
}
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


@dataclass
class _Target:
    """Where a pydantic `loc` lands: the document path and what the models say about it."""

    path: list[str | int] = field(default_factory=list)
    annotation: Any = Any
    owner: type[BaseModel] | None = None
    secret: bool = False
    # The discriminator field and tag chosen for the model at `tag_depth`, for "(type 'x')" notes.
    tag: tuple[str, str] | None = None
    tag_depth: int = -1


def _strip(annotation: Any) -> Any:
    """Remove `Annotated[...]` and `None` alternatives, which add no level to a pydantic loc."""
    while True:
        members = _union_members(annotation)
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif len(members) == 1:
            annotation = members[0]
        else:
            return annotation


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return []
    return [arg for arg in typing.get_args(annotation) if arg is not type(None)]


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _is_secret(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return inspect.isclass(origin) and issubclass(origin, SecretStr | SecretBytes | Secret)


def _secret_name(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def _literal_tag(member: Any, tag: str | int) -> str | None:
    """Name the field of a union member whose `Literal[...]` holds `tag`, if there is one."""
    model = _strip(member)
    if not _is_model(model):
        return None
    for name, info in model.model_fields.items():
        literal = typing.get_origin(info.annotation) is Literal
        if literal and tag in typing.get_args(info.annotation):
            return str(info.alias or name)
    return None


def _union_step(target: _Target, members: list[Any], label: str | int) -> None:
    # Pydantic puts the chosen tag (or the member's type name) into the loc; it is no data level.
    target.annotation = Any
    for member in members:
        if any(isinstance(meta, Tag) and meta.tag == label for meta in _metadata(member)):
            target.annotation = member
            return
        discriminator = _literal_tag(member, label)
        if discriminator is not None:
            target.annotation = member
            target.tag, target.tag_depth = (discriminator, str(label)), len(target.path)
            return
        if getattr(_strip(member), "__name__", None) == label:
            target.annotation = member
            return


def _metadata(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Annotated:
        return tuple(annotation.__metadata__)
    return ()


def _field_step(target: _Target, model: type[BaseModel], part: str | int) -> None:
    target.owner, target.annotation = model, Any
    for name, info in model.model_fields.items():
        if part in (name, info.alias):
            target.annotation = info.annotation
            secret = _secret_name(name) or _is_secret(_strip(info.annotation))
            target.secret = target.secret or secret
            return


def _type_step(target: _Target, part: str | int) -> bool:
    """Follow `part` in the type; return False when it was a union label, not a data level."""
    annotation = _strip(target.annotation)
    members = _union_members(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if members:
        _union_step(target, members, part)
        return False
    if _is_model(annotation):
        _field_step(target, annotation, part)
    elif origin in (dict, Mapping) and len(args) == 2:
        target.annotation = args[0] if part == "[key]" else args[1]
        return part != "[key]"
    elif origin in (list, set, frozenset, tuple, Sequence) and args and isinstance(part, int):
        fixed = origin is tuple and args[-1] is not Ellipsis and part < len(args)
        target.annotation = args[part] if fixed else args[0]
    else:
        target.annotation = Any
    return True


def document_path(
    document: Document, model_type: type[BaseModel], loc: Iterable[str | int]
) -> ConfigPath:
    """Where in the document a pydantic error `loc` (for `model_type` at its root) points."""
    return tuple(_walk(document, model_type, (), loc).path)


def _walk(
    document: Document, model_type: type[BaseModel], prefix: ConfigPath, loc: Iterable[str | int]
) -> _Target:
    target = _Target(path=list(prefix), annotation=model_type)
    for part in loc:
        if _type_step(target, part):
            target.path.append(part)
    target.secret = (
        target.secret
        or _is_secret(_strip(target.annotation))
        or tuple(target.path) in document.from_environment
    )
    return target


def data_at(data: Any, path: Iterable[str | int]) -> Any:
    """The value at `path` in loaded data, or MISSING."""
    for part in path:
        if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(data, dict):
            data = data.get(part, MISSING)
        else:
            return MISSING
    return data


def describe_value(value: Any) -> str:
    """Name a value for an error message without dumping structures."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def _expected_what(error: ErrorDetails) -> str | None:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in _EXPECTED_BY_TYPE:
        return _EXPECTED_BY_TYPE[kind]
    if kind in _EXPECTED_BY_LIMIT:
        return _EXPECTED_BY_LIMIT[kind].format(**ctx)
    message, prefix = error["msg"], "Input should be "
    return message.removeprefix(prefix) if message.startswith(prefix) else None


def _choices(chosen: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(chosen, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} (allowed: {', '.join(allowed)})"


def _tags(annotation: Any, discriminator: str) -> list[str]:
    tags: set[str] = set()
    for member in _union_members(_strip(annotation)):
        model = _strip(member)
        info = model.model_fields.get(discriminator) if _is_model(model) else None
        if info is not None and typing.get_origin(info.annotation) is Literal:
            tags.update(str(tag) for tag in typing.get_args(info.annotation))
    return sorted(tags)


class _Translator:
    """Turns one `ValidationError` into issues, merging union alternatives at the same place."""

    def __init__(
        self,
        document: Document,
        model_type: type[BaseModel],
        prefix: ConfigPath,
        omitted: Collection[str] = (),
    ) -> None:
        self.document = document
        self.model_type = model_type
        self.prefix = prefix
        self.omitted = omitted  # keys at `prefix` that are allowed there, though not the model's
        self.issues: list[Issue] = []
        # path -> (what was expected, the value got, the raw input) for "expected A or B" lines.
        self.mismatches: dict[ConfigPath, tuple[list[str], str, Any]] = {}

    def add(self, error: ErrorDetails) -> None:
        target = _walk(self.document, self.model_type, self.prefix, error["loc"])
        path = tuple(target.path)
        if any(path[: len(done)] == done for done in self.document.reported):
            return
        kind = error["type"]
        if kind == "missing" and len(target.path) > len(self.prefix):
            self._missing(target)
        elif kind == "extra_forbidden":
            self._unknown_key(target)
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            self._tag(target, error)
        elif (what := _expected_what(error)) is not None:
            self._mismatch(target, what, error["input"])
        else:
            self._message(target, error)

    def result(self) -> list[Issue]:
        for path, (what, got, value) in self.mismatches.items():
            message = f"expected {' or '.join(what)}, got {got}"
            if what == ["a string"] and isinstance(value, int | float):
                message += "; quote it to use it as text"
            self.issues.append(issue_at(self.document, path, message))
        return self.issues

    def _at_key(self, path: ConfigPath, message: str) -> None:
        self.issues.append(self.document.issue(path, message, self.document.key_mark(path)))

    def _missing(self, target: _Target) -> None:
        parent, key = tuple(target.path[:-1]), target.path[-1]
        message = f"required key '{key}' not provided"
        if target.tag and target.tag_depth == len(parent):
            message += f" ({target.tag[0]} '{target.tag[1]}')"
        self._at_key(parent, message)

    def _unknown_key(self, target: _Target) -> None:
        message = "unknown key"
        if target.owner is not None:
            fields = target.owner.model_fields.items()
            allowed = [info.alias or name for name, info in fields]
            if tuple(target.path[:-1]) == self.prefix:
                allowed.extend(self.omitted)
            message += _choices(str(target.path[-1]), sorted(allowed))
        self._at_key(tuple(target.path), message)

    def _tag(self, target: _Target, error: ErrorDetails) -> None:
        ctx = error.get("ctx", {})
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        allowed = _tags(target.annotation, discriminator)
        path = (*target.path, discriminator)
        if error["type"] == "union_tag_not_found":
            message = f"required key '{discriminator}' not provided (allowed: {', '.join(allowed)})"
            self._at_key(tuple(target.path), message)
            return
        tag = str(ctx.get("tag", ""))
        message = f"unknown {discriminator} '{tag}'{_choices(tag, allowed)}"
        self.issues.append(issue_at(self.document, path, message))

    def _mismatch(self, target: _Target, what: str, value: Any) -> None:
        got = "<hidden>" if target.secret else describe_value(value)
        expected, _, _ = self.mismatches.setdefault(tuple(target.path), ([], got, value))
        if what not in expected:
            expected.append(what)

    def _message(self, target: _Target, error: ErrorDetails) -> None:
        message = error["msg"]
        for prefix in _MESSAGE_PREFIXES:
            message = message.removeprefix(prefix)
        path = tuple(target.path)
        # A model validator's complaint is about the whole mapping: point at its key.
        if isinstance(data_at(self.document.data, path), dict):
            self._at_key(path, message)
        else:
            self.issues.append(issue_at(self.document, path, message))


def issue_at(document: Document, path: ConfigPath, message: str) -> Issue:
    """Make an issue at the value written for `path` (or the nearest part of it that exists)."""
    return document.issue(path, message, document.value_mark(path))


def validation_issues(
    document: Document,
    model_type: type[BaseModel],
    error: ValidationError,
    path: ConfigPath = (),
    omitted: Collection[str] = (),
) -> list[Issue]:
    """Translate a `ValidationError` raised for the part of `document` at `path` into issues.

    `omitted` names keys left out of that part before validation: allowed there all the same.
    """
    translator = _Translator(document, model_type, path, omitted)
    for details in error.errors(include_url=False):
        translator.add(details)
    return translator.result()


def context(base_dir: Path | None) -> dict[str, Any] | None:
    """The validation context that resolves relative paths from `base_dir`."""
    return {BASE_DIR: base_dir} if base_dir is not None else None


def validate_at(
    document: Document,
    path: ConfigPath,
    model_type: type[M],
    *,
    base_dir: Path | None = None,
    omit: Collection[str] = (),
) -> M:
    """Validate the part of a document at `path` (one plugin's options, say) as `model_type`.

    `omit` names keys of that mapping that belong to its container, not to the model (a plugin
    instance's `type:`); they are left out rather than reported as unknown.
    Raises `ConfigError` with this part's problems only; the loader's are `validate`'s to report.
    """
    data = data_at(document.data, path)
    if data is MISSING:
        data = {}
    elif omit and isinstance(data, dict):
        data = {key: value for key, value in data.items() if key not in omit}
    try:
        return model_type.model_validate(data, context=context(base_dir))
    except ValidationError as exc:
        raise ConfigError(validation_issues(document, model_type, exc, path, omit)) from None


def validate(document: Document, model_type: type[M], *, base_dir: Path | None = None) -> M:
    """Validate a loaded document, raising `ConfigError` with the loader's and pydantic's issues."""
    if not document.parsed:
        raise ConfigError(document.issues)
    try:
        model = model_type.model_validate(document.data, context=context(base_dir))
    except ValidationError as exc:
        raise ConfigError(
            [*document.issues, *validation_issues(document, model_type, exc)]
        ) from None
    if document.issues:
        raise ConfigError(document.issues)
    return model
