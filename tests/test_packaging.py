"""Install layout: adapters ship as bridge.plugins.*, reachable through their entry points."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import bridge
from bridge.plugin.base import Output

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("smsbridge.inputs", "smsbridge.outputs")


def test_no_top_level_plugins_package() -> None:
    """An installed smsbridge exposes its adapters only as bridge.plugins, never as `plugins`."""
    assert importlib.util.find_spec("plugins") is None
    assert importlib.util.find_spec("bridge.plugins") is not None


def test_every_plugin_folder_has_an_entry_point_that_loads() -> None:
    """Each folder under plugins/ is registered in an entry-point group and loads from there."""
    folders = {p.parent.name for p in (ROOT / "plugins").glob("*/__init__.py")}
    registered: dict[str, list[object]] = {}
    for group in GROUPS:
        for ep in entry_points(group=group):
            if ep.value.startswith("bridge.plugins."):
                registered.setdefault(ep.value.split(".")[2].split(":")[0], []).append(ep.load())
    assert folders, "no plugin folders found"
    assert folders <= set(registered), f"not registered: {sorted(folders - set(registered))}"


@pytest.mark.parametrize("ep", list(entry_points(group="smsbridge.outputs")), ids=lambda e: e.name)
def test_output_entry_points_are_outputs(ep: object) -> None:
    """Every registered output class implements the Output contract under its own name."""
    cls = ep.load()  # type: ignore[attr-defined]
    assert issubclass(cls, Output)
    assert cls.type_name == ep.name  # type: ignore[attr-defined]


def test_version_is_single_sourced() -> None:
    """The distribution's version is bridge.__version__, declared nowhere else."""
    from importlib.metadata import version

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert version("smsbridge") == bridge.__version__


def test_wheel_ships_plugins_inside_bridge(tmp_path: Path) -> None:
    """The wheel holds only bridge/, with bridge/plugins/* inside, and the entry points."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("smsbridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("smsbridge-")}
    assert tops == {"bridge"}
    for plugin in ("c123", "alertmanager", "webhook", "http_callback"):
        assert f"bridge/plugins/{plugin}/__init__.py" in names
    assert "bridge/plugins/c123/simulator/app.py" in names
    # The console's templates and static files, which are not Python modules.
    assert "bridge/console/templates/messages.html" in names
    assert "bridge/console/static/console.js" in names
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "smsbridge = bridge.cli:main" in text
    assert "[smsbridge.inputs]" in text
