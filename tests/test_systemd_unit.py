"""The shipped unit file: systemd accepts it, and its exposure score stays at 2.0 or lower."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit_file import UNIT, unit_environment

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze (Debian: systemd)")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this checkout's installed command.
    here = str(Path(sys.executable).parent / "smsbridge")
    copy = tmp_path / "smsbridge.service"
    copy.write_text(UNIT.read_text().replace("/opt/smsbridge/venv/bin/smsbridge", here))
    return copy


def test_unit_verifies(unit: Path) -> None:
    """systemd-analyze verify finds nothing wrong with the unit."""
    assert ANALYZE is not None
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_exposure_is_two_or_lower(unit: Path) -> None:
    """systemd-analyze security --offline scores the unit 2.0 or lower (OK)."""
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-500:]
    score = re.search(r"Overall exposure level for smsbridge\.service: ([0-9.]+)", done.stdout)
    assert score is not None
    assert float(score.group(1)) <= 2.0


def test_unit_declares_what_the_daemon_relies_on() -> None:
    """Notify type, watchdog, state directory, config check before reload."""
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30s",
        "DynamicUser=yes",
        "StateDirectory=smsbridge",
        "RestartPreventExitStatus=78",
    ):
        assert re.search(f"^{re.escape(line)}$", text, re.M), line
    # The key is read from the file rotate-key rewrites, not from a copy made at start.
    assert not re.search(r"^LoadCredential=", text, re.M)
    # The daemon runs optimized (no docstrings, no asserts): tests/e2e/test_crash.py and
    # tests/runtime/test_systemd.py run it so.
    assert unit_environment()["PYTHONOPTIMIZE"] == "2"
    reloads = re.findall(r"^ExecReload=(.*)$", text, re.M)
    assert reloads[0].endswith("smsbridge check -c /etc/smsbridge/config.yaml")
    assert reloads[1] == "/bin/kill -HUP $MAINPID"
