"""The README's configuration reference lists exactly the keys the config models accept."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.config.models import Config
from bridge.config.reference import key_paths
from bridge.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


def documented() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def accepted() -> set[str]:
    keys = set(key_paths(Config))
    registry = Registry.discover()
    for name in ("alertmanager", "webhook"):
        keys |= {f"inputs.<name>.{k}" for k in key_paths(registry.input_type(name).config_class)}
    keys |= {
        f"outputs.<name>.{k}" for k in key_paths(registry.output_type("http_callback").config_class)
    }
    return keys


def test_every_key_is_documented() -> None:
    """No key the models accept is missing from the README's reference."""
    assert sorted(accepted() - documented()) == []


def test_no_documented_key_is_stale() -> None:
    """No key in the README's reference is one the models would refuse."""
    assert sorted(documented() - accepted()) == []


def test_key_paths_walks_nested_models() -> None:
    """Dictionaries, lists and optional sections all appear with their inner keys."""
    paths = key_paths(Config)
    assert "contacts.<name>.number" in paths
    assert "rules[].match.when.hours" in paths
    assert "gateway.timeout.total" in paths
