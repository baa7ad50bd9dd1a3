"""Finds adapter types through entry points; only the types a config names are ever imported."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from bridge.plugin.base import Input, Output

INPUTS = "smsbridge.inputs"
OUTPUTS = "smsbridge.outputs"


class PluginLoadError(Exception):
    """A type is unknown, claimed twice, broken, or not the right kind of adapter."""


@dataclass(frozen=True, slots=True)
class Registry:
    """The adapter types installed in this environment, by group and name."""

    inputs: dict[str, list[EntryPoint]]
    outputs: dict[str, list[EntryPoint]]

    @classmethod
    def discover(cls) -> Registry:
        def group(name: str) -> dict[str, list[EntryPoint]]:
            found: dict[str, list[EntryPoint]] = {}
            for ep in entry_points(group=name):
                found.setdefault(ep.name, []).append(ep)
            return found

        return cls(inputs=group(INPUTS), outputs=group(OUTPUTS))

    def input_type(self, name: str) -> type[Input[Any]]:
        cls = self._load(self.inputs, name, "input")
        if not (isinstance(cls, type) and issubclass(cls, Input)):
            raise PluginLoadError(f"input type {name!r} is not a smsbridge Input")
        return cls

    def output_type(self, name: str) -> type[Output[Any]]:
        cls = self._load(self.outputs, name, "output")
        if not (isinstance(cls, type) and issubclass(cls, Output)):
            raise PluginLoadError(f"output type {name!r} is not a smsbridge Output")
        return cls

    @staticmethod
    def _load(found: dict[str, list[EntryPoint]], name: str, kind: str) -> object:
        candidates = found.get(name)
        if not candidates:
            installed = ", ".join(sorted(found)) or "none"
            raise PluginLoadError(
                f"unknown {kind} type {name!r}; installed types: {installed} (third-party types "
                f"need their package installed, e.g. pip install smsbridge-{name})"
            )
        if len(candidates) > 1:
            owners = sorted({ep.dist.name if ep.dist else ep.value for ep in candidates})
            raise PluginLoadError(f"{kind} type {name!r} is claimed by {', '.join(owners)}")
        try:
            return candidates[0].load()
        except Exception as exc:  # a broken third-party package must not crash the report
            raise PluginLoadError(f"{kind} type {name!r} failed to load: {exc}") from exc
