"""`smsbridge page --test POLICY`: a policy walked end to end on the simulator, step by step,
on a store of its own (the real one is never touched)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.commands.common import EXIT_USAGE

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
CONFIG = """
store: {{path: {store}}}
contacts:
  alice: {{number: "15102110086", name: Alice}}
  bob: {{number: "15102110087", name: Bob}}
oncall:
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: 1s}}
      report_timeout: 1h
"""


async def test_the_walk_prints_each_step_as_it_happens(tmp_path: Path) -> None:
    config = tmp_path / "smsbridge.yaml"
    config.write_text(CONFIG.format(store=tmp_path / "real.sqlite3"))
    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        "page",
        "--test",
        "ops",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[:4] == [
        "rehearsing policy ops on the built-in simulator; Ctrl-C stops",
        "the plan if nobody acknowledges (ops):",
        "  +0m00s pass 1 step 1: Alice",
        "  +0m01s pass 1 step 2: Bob",
    ]
    walked = [line.split(" ", 1)[1] for line in lines[4:]]
    alice = walked.index("pass 1 step 1: paged Alice (151****0086), code 1 (1a acknowledges)")
    bob = walked.index("pass 1 step 2: paged Bob (151****0087), code 1 (1a acknowledges)")
    assert alice < walked.index("  the page to Alice (151****0086) reached the gateway") < bob
    assert walked[-1] == "nobody acknowledged after every step and repeat: PageUnanswered raised"
    assert lines[4 + bob].startswith("+0m01s")
    assert not (tmp_path / "real.sqlite3").exists()  # the config's store is never touched


def test_an_unknown_policy_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "smsbridge.yaml"
    config.write_text(CONFIG.format(store=tmp_path / "real.sqlite3"))
    assert main(["page", "--test", "opps", "-c", str(config)]) == EXIT_USAGE
    assert "unknown policy 'opps' (defined: ops)" in capsys.readouterr().err


def test_live_needs_a_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "smsbridge.yaml"
    config.write_text(CONFIG.format(store=tmp_path / "real.sqlite3"))
    assert main(["page", "--test", "ops", "--live", "-c", str(config)]) == EXIT_USAGE
    assert "--live needs a gateway section" in capsys.readouterr().err
