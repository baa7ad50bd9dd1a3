"""Line-aware YAML loading: plain data plus where every key and value is written, and `${NAME}`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from bridge.config.errors import ConfigPath, Issue

_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = frozenset({f"{_TAG}map", f"{_TAG}seq"})
_KINDS = {
    f"{_TAG}bool": "a boolean",
    f"{_TAG}int": "a number",
    f"{_TAG}float": "a number",
    f"{_TAG}null": "null",
    f"{_TAG}timestamp": "a date",
}
# `$${` first, so an escaped reference is never read as a real one; a bare `${` is malformed.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


@dataclass(frozen=True)
class Mark:
    """A 1-based position in the config text."""

    line: int
    column: int


@dataclass(frozen=True)
class Document:
    """A loaded config: its data, where each part is written, and the problems found on the way."""

    file: str
    data: Any
    # False after a syntax error: there is no data worth validating.
    parsed: bool = True
    keys: Mapping[ConfigPath, Mark] = field(default_factory=dict)
    values: Mapping[ConfigPath, Mark] = field(default_factory=dict)
    # Values that came from the environment: they may be secrets, so errors never echo them.
    from_environment: frozenset[ConfigPath] = frozenset()
    # Values the loader already reported (unset variable, bad tag); validation stays quiet on them.
    reported: frozenset[ConfigPath] = frozenset()
    issues: tuple[Issue, ...] = ()

    def key_mark(self, path: ConfigPath) -> Mark | None:
        """Where the key for `path` is written, else its value, else its nearest ancestor."""
        return self._find(path, self.keys, self.values)

    def value_mark(self, path: ConfigPath) -> Mark | None:
        """Where the value at `path` starts, else its key, else its nearest ancestor."""
        return self._find(path, self.values, self.keys)

    def issue(self, path: ConfigPath, message: str, mark: Mark | None) -> Issue:
        """Make an issue in this document at `mark`."""
        line, column = (mark.line, mark.column) if mark else (None, None)
        return Issue(path, message, line, column, self.file)

    @staticmethod
    def _find(
        path: ConfigPath, first: Mapping[ConfigPath, Mark], second: Mapping[ConfigPath, Mark]
    ) -> Mark | None:
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            mark = first.get(prefix) or second.get(prefix)
            if mark:
                return mark
        return None


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem, context = exc.problem or "", exc.context or ""
    if problem.startswith("but ") and context:
        message = f"{context}, {problem}"
    elif problem and context and exc.context_mark:
        message = f"{problem} ({context} started at line {exc.context_mark.line + 1})"
    else:
        message = problem or context
    if "'\\t'" in problem:
        message += "; indent with spaces, not tabs"
    return f"invalid YAML: {message}{_reference_hint(exc.problem_mark)}"


def _reference_hint(mark: yaml.Mark | None) -> str:
    # Inside `{...}` or `[...]` a brace ends a plain value: an unquoted ${NAME} cannot be read.
    text = getattr(mark, "buffer", None)
    if (
        mark is None
        or not isinstance(text, str)
        or text[mark.pointer - 1 : mark.pointer + 1] != "${"
    ):
        return ""
    end = text.find("}", mark.pointer)
    reference = text[mark.pointer - 1 : end + 1] if end != -1 else "${NAME}"
    return f'; inside {{...}} or [...] a ${{NAME}} must be quoted: "{reference}"'


class LineLoader(yaml.SafeLoader):
    """A SafeLoader that builds plain data itself so it knows the path of every node it builds."""

    def __init__(self, text: str, file: str, environ: Mapping[str, str]) -> None:
        super().__init__(text)
        self.file = file
        self.environ = environ
        self.key_marks: dict[ConfigPath, Mark] = {}
        self.value_marks: dict[ConfigPath, Mark] = {}
        self.from_environment: set[ConfigPath] = set()
        self.reported: set[ConfigPath] = set()
        self.issues: list[Issue] = []
        self._flattened: set[int] = set()
        self._building: set[int] = set()

    def load_document(self) -> Document:
        """Compose and build the single document in the text."""
        try:
            node = self.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
            issue = Issue((), _syntax_message(exc), line, column, self.file)
            return Document(self.file, {}, parsed=False, issues=(issue,))
        finally:
            self.dispose()
        data = self._build(node, ()) if node is not None else None
        return Document(
            self.file,
            {} if data is None else data,
            keys=self.key_marks,
            values=self.value_marks,
            from_environment=frozenset(self.from_environment),
            reported=frozenset(self.reported),
            issues=tuple(self.issues),
        )

    def _report(
        self, path: ConfigPath, message: str, node: yaml.Node, *, unusable: bool = True
    ) -> None:
        mark = _mark(node)
        self.issues.append(Issue(path, message, mark.line, mark.column, self.file))
        if unusable:
            self.reported.add(path)

    def _build(self, node: yaml.Node, path: ConfigPath) -> Any:
        self.value_marks[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self._build_scalar(node, path)
        if node.tag not in _COLLECTION_TAGS:
            self._report(path, f"unsupported tag {node.tag!r}", node)
            return None
        if id(node) in self._building:
            self._report(path, "an alias refers to the mapping or list that contains it", node)
            return None
        self._building.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._build_mapping(node, path)
            return [self._build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._building.discard(id(node))

    def _build_mapping(self, node: yaml.MappingNode, path: ConfigPath) -> dict[str, Any]:
        # An alias builds the same node again; check and merge `<<` only on the first visit.
        if id(node) not in self._flattened:
            self._flattened.add(id(node))
            self._check_duplicates(node, path)
            try:
                self.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                self._report(path, _syntax_message(exc), node)
                return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is not None:
                self.key_marks[(*path, key)] = _mark(key_node)
                result[key] = self._build(value_node, (*path, key))
        return result

    def _check_duplicates(self, node: yaml.MappingNode, path: ConfigPath) -> None:
        # Plain YAML keeps the last of two equal keys without a word; here it is a problem.
        first_lines: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != f"{_TAG}str":
                continue
            name = key_node.value
            if name in first_lines:
                message = f"duplicate key '{name}'; first written at line {first_lines[name]}"
                self._report((*path, name), message, key_node, unusable=False)
            else:
                first_lines[name] = _mark(key_node).line

    def _key(self, node: yaml.Node, path: ConfigPath) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            kind = "a mapping" if isinstance(node, yaml.MappingNode) else "a list"
            self._report(path, f"a key must be text, not {kind}", node, unusable=False)
            return None
        if node.tag == f"{_TAG}str":
            return str(node.value)
        kind = _KINDS.get(node.tag, f"tag {node.tag!r}")
        message = f'this key is read as {kind}; quote it ("{node.value}") to use it as text'
        self._report((*path, node.value), message, node, unusable=False)
        return None

    def _build_scalar(self, node: yaml.ScalarNode, path: ConfigPath) -> Any:
        if node.tag not in self.yaml_constructors:
            message = f"unsupported tag {node.tag!r}"
            if node.tag in ("!env", "!env_var"):
                message += "; environment variables are written ${NAME}"
            self._report(path, message, node)
            return node.value
        try:
            value = self.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError):
            # e.g. `2024-13-45` matches the date pattern but is no date; the value may be a secret.
            kind = _KINDS.get(node.tag, f"tag {node.tag!r}")
            self._report(
                path, f"cannot read this value as {kind}; quote it to use it as text", node
            )
            return node.value
        if isinstance(value, str) and "${" in value:
            return self._substitute(value, node, path)
        return value

    def _substitute(self, text: str, node: yaml.ScalarNode, path: ConfigPath) -> str:
        problems: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if match.group(0) == "$${":
                return "${"
            if name is None:
                problems.append("malformed '${'; write ${NAME}, or $${ for a literal '${'")
            elif name not in self.environ:
                problems.append(f"environment variable '{name}' is not set")
            else:
                self.from_environment.add(path)
                return self.environ[name]
            return match.group(0)

        result = _REFERENCE.sub(replace, text)
        for message in dict.fromkeys(problems):
            self._report(path, message, node)
        return result


def load_yaml(text: str, file: str, environ: Mapping[str, str] | None = None) -> Document:
    """Load config text into a `Document`; problems are collected in it, never raised."""
    loader = LineLoader(text, file, os.environ if environ is None else environ)
    return loader.load_document()
