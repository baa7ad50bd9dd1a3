"""Config problems (`Issue`) and the compiler-style report that lists all of them at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ConfigPath = tuple[str | int, ...]


def format_path(path: ConfigPath) -> str:
    """Write a path the way the user would point at it: `rules[0].to`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def os_reason(exc: OSError) -> str:
    """Why a file operation failed, as the end of a sentence: `no such file or directory`."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason[:1].lower()}{reason[1:]}"


@dataclass(frozen=True)
class Issue:
    """One problem in a config file: where it is (1-based line and column) and what is wrong."""

    path: ConfigPath
    message: str
    line: int | None
    column: int | None
    file: str

    def location(self) -> str:
        """Return `file:line:column`, or as much of it as is known."""
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def render(self) -> str:
        """Return the report line for this issue."""
        where = format_path(self.path)
        what = f"{where}: {self.message}" if where else self.message
        return f"{self.location()}: {what}"


def _position(issue: Issue) -> tuple[str, int, int, str]:
    # Issues without a position (an unreadable file) come first: they explain the rest.
    return (issue.file, issue.line or 0, issue.column or 0, format_path(issue.path))


class ConfigError(Exception):
    """Raised with every problem found in a config, so one run shows all of them."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: tuple[Issue, ...] = tuple(sorted(issues, key=_position))
        if not self.issues:
            raise ValueError("ConfigError needs at least one issue")
        super().__init__(self.render())

    def render(self) -> str:
        """Return the full report: a summary line, then one line per issue in file order."""
        files = ", ".join(dict.fromkeys(issue.file for issue in self.issues))
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        lines = [f"error: {files} has {count} {noun}"]
        lines.extend(issue.render() for issue in self.issues)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()
