"""A separately installed plugin package is found through its entry points alone, and routed."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError
from bridge.testing import DaemonFactory, post_json

PACKAGE = Path(__file__).parent / "data" / "smsbridge_example_plugin"
GUIDE = Path(__file__).parent.parent / "docs" / "writing-a-plugin.md"
DIST = "smsbridge-example-plugin"
MODULE = "smsbridge_example_plugin"
TOKEN = "echo-token-0123456789"


def pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def forget_module() -> None:
    for name in [m for m in sys.modules if m == MODULE or m.startswith(f"{MODULE}.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The example package pip-installed into this venv for the module's tests, then removed."""
    # Built from a copy: pip builds in the source tree, which must stay free of build/ and egg-info.
    source = tmp_path_factory.mktemp("example") / "smsbridge_example_plugin"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip("install", "--no-deps", "--no-build-isolation", str(source))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        pip("uninstall", "-y", DIST)
        forget_module()


def config(log: Path) -> str:
    return f"""
inputs:
  echo:
    type: example_echo
    token: {TOKEN}
outputs:
  jsonl:
    type: example_log
    path: {log}
rules:
  - name: to-log
    match: {{kind: alert, source: echo}}
    post: {{to: jsonl, template: "{{{{ status }}}} {{{{ labels.alertname }}}}: {{{{ text }}}}"}}
"""


async def read_lines(path: Path, count: int) -> list[dict[str, Any]]:
    """The first `count` JSON lines of `path`, waiting up to 10 s for them to be written."""

    def read() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    async with asyncio.timeout(10):
        while True:
            lines = await asyncio.to_thread(read)
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
            await asyncio.sleep(0.02)


async def test_uninstalled_plugin_is_an_unknown_type(
    smsbridge_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """Before the package is installed, the same config names an unknown type and what to do."""
    try:
        distribution(DIST)
    except PackageNotFoundError:
        pass
    else:
        pytest.skip(f"{DIST} is installed in this environment")
    with pytest.raises(ConfigError, match=r"unknown input type 'example_echo'.*pip install"):
        await smsbridge_daemon(config(tmp_path / "x.jsonl"))


async def test_installed_plugin_is_routed_through_its_entry_points(
    installed: None, smsbridge_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """A config naming example_echo and example_log runs them; the rule's job lands in the file."""
    assert distribution(DIST).version == "0.1.0"
    assert [ep.value for ep in entry_points(group="smsbridge.inputs", name="example_echo")] == [
        "smsbridge_example_plugin:EchoInput"
    ]
    assert MODULE not in sys.modules  # nothing imported it: the daemon must find it alone
    log = tmp_path / "jobs.jsonl"
    daemon = await smsbridge_daemon(config(log))
    assert MODULE in sys.modules
    body = {"text": "97% on /var", "labels": {"alertname": "DiskFull", "host": "db1"}}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert await post_json(daemon, "/hooks/echo", body, headers) == (
        200,
        {"accepted": 1, "duplicate": False, "rejected": []},
    )
    (line,) = await read_lines(log, 1)
    assert line["text"] == "firing DiskFull: 97% on /var"
    assert line["rule"] == "to-log"
    assert line["event"]["source"] == "echo"
    assert line["event"]["labels"] == {"alertname": "DiskFull", "host": "db1"}
    assert isinstance(line["job_id"], int)
    # The plugin answers like the built-in inputs, with the shared helpers.
    assert (await post_json(daemon, "/hooks/echo", body))[0] == 401
    wrong = await post_json(daemon, "/hooks/echo", body, {"Authorization": "Bearer nope"})
    assert wrong == (403, {"error": "the token was not accepted"})
    status, answer = await post_json(daemon, "/hooks/echo", {"labels": {}}, headers)
    assert (status, answer) == (422, {"error": "text: required"})


async def test_plugin_options_are_checked_like_built_in_ones(
    installed: None, smsbridge_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """A third-party type's unknown or missing options are config errors with their place."""
    bad = config(tmp_path / "x.jsonl").replace(f"token: {TOKEN}", "tokn: x")
    with pytest.raises(ConfigError) as caught:
        await smsbridge_daemon(bad)
    messages = sorted(issue.render().split(": ", 1)[1] for issue in caught.value.issues)
    assert messages == [
        "inputs.echo.tokn: unknown key; did you mean 'token'? (allowed: kind, token, type)",
        "inputs.echo: required key 'token' not provided",
    ]


def test_guide_shows_the_example_package_as_it_is() -> None:
    """docs/writing-a-plugin.md quotes every file of the example package verbatim."""
    guide = GUIDE.read_text()
    files = [PACKAGE / "pyproject.toml", *sorted((PACKAGE / MODULE).glob("*.py"))]
    assert len(files) == 4
    for path in files:
        assert path.read_text() in guide, f"{path.name} differs from the guide's copy"


def test_guide_test_examples_pass(installed: None, tmp_path: Path) -> None:
    """The guide's test examples run green against the installed example package."""
    testing_section = GUIDE.read_text().split("## 5.")[1].split("## 6.")[0]
    blocks = re.findall(r"```python\n(.*?)```", testing_section, re.DOTALL)
    assert len(blocks) == 2
    for number, block in enumerate(blocks):
        (tmp_path / f"test_guide_{number}.py").write_text(block)
    registered = any(ep.value == "bridge.testing" for ep in entry_points(group="pytest11"))
    load = [] if registered else ["-p", "bridge.testing"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", *load, "-p", "no:cacheprovider", "-q"),
            *("-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
