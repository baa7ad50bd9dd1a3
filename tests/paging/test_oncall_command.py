"""`smsbridge oncall`: who is on call and the next handoffs, as a table or JSON; 78 if bad."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.commands.common import EXIT_CONFIG, EXIT_USAGE

BIN = Path(sys.executable).parent
CONFIG = """
contacts:
  alice: "15102110086"
  bob: "15102110087"
  carol: "15102110088"
oncall:
  schedules:
    primary:
      timezone: Asia/Shanghai
      rotation: {members: [alice, bob], shift: 1w, handoff: "mon 10:00", start: 2026-12-07}
      overrides: [{who: carol, from: "2026-12-24 18:00", to: "2026-12-26 10:00"}]
    berlin:
      timezone: Europe/Berlin
      rotation: {members: [carol, alice], shift: 1w, handoff: "mon 10:00", start: 2027-03-15}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "smsbridge.yaml"
    path.write_text(CONFIG)
    return path


def test_json_and_table_from_the_installed_command(config: Path) -> None:
    """The real command: JSON for scripts, a table for people, handoffs in local time."""
    done = subprocess.run(
        [str(BIN / "smsbridge"), "oncall", "-c", str(config), "--at", "2026-12-20T12:00", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["at"] == "2026-12-20T12:00:00+08:00"  # no offset: the gateway's zone
    primary = next(s for s in report["schedules"] if s["name"] == "primary")
    assert primary["on_call"] == ["bob"]
    assert primary["next_handoffs"] == [
        {"at": "2026-12-21T10:00:00+08:00", "from": ["bob"], "to": ["alice"]},
        {"at": "2026-12-24T18:00:00+08:00", "from": ["alice"], "to": ["carol"]},
        {"at": "2026-12-26T10:00:00+08:00", "from": ["carol"], "to": ["alice"]},
    ]
    berlin = next(s for s in report["schedules"] if s["name"] == "berlin")
    assert berlin["on_call"] == []  # the rotation starts in March

    table = subprocess.run(
        [str(BIN / "smsbridge"), "oncall", "berlin", "-c", str(config), "--at", "2027-03-20"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert table[0] == "on call at Sat 2027-03-20 00:00 +0800"
    assert table[2].split() == ["SCHEDULE", "ON", "CALL", "NEXT", "HANDOFF", "TO"]
    assert table[3].split() == ["berlin", "carol", "Mon", "2027-03-22", "10:00", "+0100", "alice"]
    # Across the change to summer time the handoff stays at 10:00 local.
    assert table[4].split() == ["Mon", "2027-03-29", "10:00", "+0200", "carol"]
    assert len(table) == 6


def test_unknown_schedule_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["oncall", "primery", "-c", str(config)]) == EXIT_USAGE
    assert "unknown schedule 'primery' (defined: berlin, primary)" in capsys.readouterr().err


def test_no_schedules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oncall"]) == 0
    assert "no on-call schedules are defined" in capsys.readouterr().out


def test_bad_config_exits_78_naming_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name that is no contact is found by the command too, with its line."""
    path = tmp_path / "smsbridge.yaml"
    path.write_text(CONFIG.replace("[alice, bob]", "[alice, bobby]"))
    assert main(["oncall", "-c", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"{path}:10:35: oncall.schedules.primary.rotation.members[1]: unknown contact" in err

    path.write_text(CONFIG.replace("shift: 1w", "shift: 1y"))
    assert main(["oncall", "-c", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "has 2 problems" in err  # the shift of both schedules
    assert "rotation.shift: expected a shift length like '1w', '1d' or '12h', got '1y'" in err


def test_check_finds_an_unknown_oncall_name_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` (and so `run`) refuses what `oncall` refuses: one config, one verdict."""
    path = tmp_path / "smsbridge.yaml"
    path.write_text(CONFIG.replace("[alice, bob]", "[alice, bobby]"))
    assert main(["check", "-c", str(path)]) == EXIT_CONFIG
    assert "oncall.schedules.primary.rotation.members[1]: unknown contact" in (
        capsys.readouterr().err
    )
