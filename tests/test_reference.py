"""The README's configuration reference lists exactly the keys the config models accept."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.config.models import Config
from bridge.config.reference import END, START, key_paths, plugin_reference
from bridge.plugin.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def written_by_hand() -> set[str]:
    section = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    section = section.split(START, 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def test_every_core_key_is_documented() -> None:
    """No key of the core sections is missing from the README's reference."""
    assert sorted(set(key_paths(Config)) - written_by_hand()) == []


def test_no_documented_key_is_stale() -> None:
    """No key in the hand-written reference is one the models would refuse."""
    assert sorted(written_by_hand() - set(key_paths(Config))) == []


def test_adapter_options_are_generated_from_the_models() -> None:
    """The adapter tables in the README are exactly what the installed models generate."""
    generated = README.split(START, 1)[1].split(END, 1)[0].strip()
    assert generated == plugin_reference(Registry.discover()).strip(), (
        "run: python -m bridge.config.reference README.md"
    )


def test_generated_tables_cover_every_adapter_key() -> None:
    """Every key of every installed adapter type appears in the generated tables."""
    registry = Registry.discover()
    text = plugin_reference(registry)
    for group, load in (("inputs", registry.input_type), ("outputs", registry.output_type)):
        for name in getattr(registry, group):
            if name == "c123":
                continue
            for key in key_paths(load(name).config_class):
                assert f"`{group}.<name>.{key}`" in text


def test_key_paths_walks_nested_models() -> None:
    """Dictionaries, lists and optional sections all appear with their inner keys."""
    paths = key_paths(Config)
    assert "contacts.<name>.number" in paths
    assert "rules[].match.when.hours" in paths
    assert "gateway.timeout.total" in paths
