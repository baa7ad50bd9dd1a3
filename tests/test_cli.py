"""The command line: gateway commands against a simulator, exit codes, output formats."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.cli import FAMILIES, families_for, main
from bridge.commands.common import EXIT_CODES
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
)

A, B = "15102110086", "15102110087"
BIN = Path(sys.executable).parent


def write_config(tmp_path: Path, url: str, **extra: str) -> Path:
    lines = [
        "gateway:",
        f"  base_url: {url}",
        f"  account: {DEFAULT_ACCOUNT}",
        *(f"  {key}: {value}" for key, value in extra.items()),
    ]
    if "authkey_file" not in extra:
        lines.append(f"  authkey: {DEFAULT_AUTHKEY}")
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_send_without_config_uses_the_built_in_simulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no config, send goes to an in-process simulator and the log says so."""
    code, out, err = run(capsys, "send", "--to", f"{A},+86{B}", "--json", "磁盘满了")
    assert code == 0
    document = json.loads(out)
    (call,) = document["calls"]
    assert call["numbers"] == [A, B]
    assert isinstance(call["result"]["items"][0]["msgid"], str)
    assert call["result"]["items"][0]["price"] == "0.10"
    assert "gateway_simulator_embedded" in err


def test_send_reaches_a_configured_gateway(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """send through a config file lands at that gateway; terminal output says what happened."""
    config = write_config(tmp_path, threaded_simulator.url)
    code, out, _ = run(capsys, "send", "-c", str(config), "--to", f"{A},{B}", "hello")
    assert code == 0
    assert re.match(r"sent to 15102110086, 15102110087: 2 segment\(s\), cost 0\.20", out)
    assert [m.content for m in threaded_simulator.state.messages] == ["hello", "hello"]


def test_balance_replies_reports(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """balance, replies and reports print what the gateway holds, in text and JSON."""
    config = str(write_config(tmp_path, threaded_simulator.url))
    assert run(capsys, "send", "-c", config, "--to", A, "ping")[0] == 0
    code, out, _ = run(capsys, "balance", "-c", config, "--json")
    assert (code, json.loads(out)["remain"]) == (0, "99.900")
    threaded_simulator.state.inject_reply(A, "pong 收到")
    code, out, _ = run(capsys, "replies", "-c", config)
    assert code == 0
    assert A in out
    assert "pong 收到" in out
    code, out, _ = run(capsys, "reports", "-c", config, "--json")
    (report,) = json.loads(out)
    assert (report["mobile"], report["status"]) == (A, "delivered")
    assert report["carrier_code"] == "DELIVRD"
    code, out, _ = run(capsys, "reports", "-c", config)
    assert out.strip() == "no new delivery reports"


def test_listed_replies_never_write_a_control_character_raw(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """A reply is anybody's text: C1 controls, bidi overrides and newlines come out escaped."""
    config = str(write_config(tmp_path, threaded_simulator.url))
    threaded_simulator.state.inject_reply(A, "pong\x9b2J\u202e\nfake: line")
    code, out, _ = run(capsys, "replies", "-c", config)
    assert code == 0
    (line,) = out.splitlines()
    assert line.endswith(f"{A}  pong\\x9b2J\\u202e\\nfake: line")


def test_refusal_exits_one(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """A gateway refusal exits 1 and says why."""
    threaded_simulator.state.add_fault(Fault(FaultKind.CODE, code=-9))
    config = str(write_config(tmp_path, threaded_simulator.url))
    code, out, _ = run(capsys, "send", "-c", config, "--to", A, "x")
    assert code == 1
    assert "NOT SENT to 15102110086" in out
    assert "balance too low" in out


def test_bad_number_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid number exits 2 and names it as a person would, without calling the gateway."""
    code, _, err = run(capsys, "send", "--to", f"{A},abc", "x")
    assert code == 2
    assert "smsbridge send: the second number, 'abc' is not a mainland mobile number" in err
    assert "messages[" not in err


def test_send_to_contacts_and_groups_from_the_config(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """--to takes contact and group names from the config beside numbers; each number once."""
    config = write_config(tmp_path, threaded_simulator.url)
    config.write_text(
        config.read_text()
        + f'contacts:\n  alice: "{A}"\n  bob: "{B}"\n  2nd-line: "15102110089"\n'
        + "groups:\n  oncall: [alice, bob]\n"
    )
    to = "oncall,alice,15102110088,2nd-line"
    code, _, err = run(capsys, "send", "-c", str(config), "--to", to, "hi")
    assert (code, err) == (0, "")
    assert sorted(m.mobile for m in threaded_simulator.state.messages) == [
        A,
        B,
        "15102110088",
        "15102110089",
    ]


def test_send_names_unknown_recipients_as_a_person_would(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """An unknown name is told apart from a bad number, with a suggestion; nothing is sent."""
    config = write_config(tmp_path, threaded_simulator.url)
    config.write_text(config.read_text() + f'contacts:\n  bob: "{B}"\n')
    code, _, err = run(capsys, "send", "-c", str(config), "--to", "bob,bbo,123", "hi")
    assert code == 2
    assert err.splitlines() == [
        "smsbridge send: the second recipient, 'bbo': unknown contact or group 'bbo'; "
        "did you mean 'bob'? (defined: bob)",
        "smsbridge send: the third number, '123' is not a mainland mobile number "
        "(11 digits starting with 1, optionally prefixed by +86 or 86)",
    ]
    assert threaded_simulator.state.messages == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--at", "2020-01-01T09:00", "hello"], "the time given with --at must be at least"),
        (["x" * 1001], "the text has 1001 characters; the limit is 1000"),
        ([""], "the text must not be empty"),
    ],
)
def test_refused_before_any_call_exits_two(
    capsys: pytest.CaptureFixture[str],
    threaded_simulator: Simulator,
    tmp_path: Path,
    argv: list[str],
    problem: str,
) -> None:
    """Bad input is exit 2 whatever it is: a schedule too close (it was 1) or a text too long;
    the gateway gets no call."""
    config = str(write_config(tmp_path, threaded_simulator.url))
    code, out, err = run(capsys, "send", "-c", config, "--to", A, *argv)
    assert (code, out) == (2, "")
    assert f"smsbridge send: {problem}" in err
    assert threaded_simulator.state.messages == []


def test_help_shows_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`smsbridge --help` ends with the one exit code table, the README's too."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.endswith(
        "exit codes:\n"
        "  0   done\n"
        "  1   refused by the gateway (or it could not be reached), or held\n"
        "  2   refused before any call: bad input (an option, a number, a text, a time)\n"
        "  75  the store's disk is full, or another daemon runs on its SQLite file: it may "
        "pass, so systemd tries again\n"
        "  78  bad config, wherever it is found (a key file's content too), or a store that "
        "cannot be opened or written\n"
    )
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for code, meaning in EXIT_CODES:
        assert f"| `{code}` | {meaning} |" in readme


def test_bad_config_exits_78_with_every_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bad config exits 78, listing each problem with file and line, and no secret."""
    path = tmp_path / "bad.yaml"
    path.write_text("gateway:\n  base_ur: http://x\n  account: nope\n  authkey: sEcReT\n")
    code, _, err = run(capsys, "balance", "-c", str(path))
    assert code == 78
    assert f"{path}:2:3: gateway.base_ur: unknown key; did you mean 'base_url'?" in err
    assert f"{path}:3:12: gateway.account: must look like employee@enterprise" in err
    assert "gateway.authkey" in err
    assert "sEcReT" not in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("abcdefghijklmnopqrstuvwxyz012345\n", "must be 32 upper-case letters and digits"),
        ("", "is empty"),
        (None, "cannot read the key file"),
    ],
)
def test_a_bad_key_file_is_a_config_error_for_check_and_run(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    """check refuses what run refuses: a malformed, empty or missing key file exits 78 from
    both (run exited 2, which systemd restarts every 5 s), naming the file, never the key."""
    key_file = tmp_path / "c123.key"
    if content is not None:
        key_file.write_text(content)
    config = write_config(tmp_path, "http://127.0.0.1:9", authkey_file=str(key_file))
    for command in ("check", "run"):
        done = subprocess.run(
            [str(BIN / "smsbridge"), command, "-c", str(config)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert done.returncode == 78, (command, done.stderr)
        assert f"{config}:4:17: gateway.authkey_file: " in done.stderr
        assert problem in done.stderr
        assert "Traceback" not in done.stderr
        assert "abcdefghijklmnopqrstuvwxyz012345" not in done.stdout + done.stderr


def test_run_logs_config_warnings(tmp_path: Path) -> None:
    """What check warns about, run logs as config_warning before it starts."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server: {{listen: '127.0.0.1:0'}}\nstore: {{path: {tmp_path / 'db.sqlite3'}}}\n"
        "simulator: {port: 0}\nrules:\n  - name: r\n"
        "    sms: {to: ['15102110086'], template: '{{ annotation.summary }}'}\n"
    )
    proc = subprocess.Popen(
        [str(BIN / "smsbridge"), "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "daemon_started":
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    (warning,) = [e for e in events if e["event"] == "config_warning"]
    assert warning["where"] == f"{config}:6:42"
    assert warning["path"] == "rules[0].sms.template"
    assert warning["problem"].startswith("no event provides 'annotation'")
    assert events.index(warning) < len(events) - 1


def test_rotate_key_writes_the_key_file(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """rotate-key stores the new key in gateway.authkey_file; the next command uses it."""
    key_file = tmp_path / "c123.key"
    key_file.write_text(DEFAULT_AUTHKEY + "\n")
    config = str(write_config(tmp_path, threaded_simulator.url, authkey_file=str(key_file)))
    code, out, _ = run(capsys, "rotate-key", "-c", config)
    assert code == 0
    assert "new key stored in" in out
    assert key_file.read_text().strip() != DEFAULT_AUTHKEY
    assert key_file.read_text().strip() not in out
    assert run(capsys, "balance", "-c", config)[0] == 0


def test_rotate_key_needs_somewhere_to_store(
    capsys: pytest.CaptureFixture[str], threaded_simulator: Simulator, tmp_path: Path
) -> None:
    """Without a key file the gateway is not asked: the new key would be lost."""
    config = str(write_config(tmp_path, threaded_simulator.url))
    code, _, err = run(capsys, "rotate-key", "-c", config)
    assert code == 2
    assert "no key file" in err
    assert threaded_simulator.state.calls["updateKey"] == 0


@pytest.mark.parametrize("where", ["missing/dir/k", "a-file/k", "."])
def test_rotate_key_refuses_an_unwritable_key_file_before_asking(
    capsys: pytest.CaptureFixture[str],
    threaded_simulator: Simulator,
    tmp_path: Path,
    where: str,
) -> None:
    """A key file that cannot be written is one readable line and exit 2; the gateway is not
    asked, so the old key keeps working."""
    (tmp_path / "a-file").write_text("")
    config = str(write_config(tmp_path, threaded_simulator.url))
    key_file = tmp_path / where
    code, out, err = run(capsys, "rotate-key", "-c", config, "--key-file", str(key_file))
    assert code == 2
    assert out == ""
    assert err.startswith(f"smsbridge rotate-key: cannot write the key file {key_file}: ")
    assert err.count("\n") == 1
    assert "the gateway was not asked" in err
    assert threaded_simulator.state.calls["updateKey"] == 0


def test_rotate_key_to_a_missing_directory_from_the_command_line() -> None:
    """The reported case, through the installed command: no traceback."""
    done = subprocess.run(
        [str(BIN / "smsbridge"), "rotate-key", "--key-file", "/missing/dir/k"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "smsbridge rotate-key: cannot write the key file /missing/dir/k: no such file or "
        "directory; the gateway was not asked and the key is unchanged\n"
    )


@pytest.mark.parametrize(
    "command", ["send", "balance", "replies", "reports", "rotate-key", "simulator"]
)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """--help describes each command and exits 0."""
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "-c" in capsys.readouterr().out or command == "simulator"


def test_usage_error_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing required option is a usage error (2)."""
    with pytest.raises(SystemExit) as info:
        main(["send", "hello"])
    assert info.value.code == 2


def test_python_dash_m_and_version() -> None:
    """`python -m bridge --version` prints the single-sourced version."""
    import bridge

    done = subprocess.run(
        [sys.executable, "-m", "bridge", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"smsbridge {bridge.__version__}"


def test_simulator_command_serves_and_takes_injected_replies(tmp_path: Path) -> None:
    """`smsbridge simulator` serves until SIGTERM; `simulator reply` injects into it."""
    proc = subprocess.Popen(
        [str(BIN / "smsbridge"), "simulator", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = json.loads(line)["url"]
        done = subprocess.run(
            [str(BIN / "smsbridge"), "simulator", "reply", "--url", url, "--from", A, "好的"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        config = write_config(tmp_path, url)
        replies = subprocess.run(
            [str(BIN / "smsbridge"), "replies", "-c", str(config), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        (reply,) = json.loads(replies.stdout)
        assert (reply["mobile"], reply["content"]) == (A, "好的")
        balance = subprocess.run(
            [str(BIN / "smsbridge"), "balance", "-c", str(config), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert Decimal(json.loads(balance.stdout)["remain"]) == Decimal("100")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
    assert code == 0


@pytest.mark.parametrize(
    ("argv", "families"),
    [
        (["run", "-c", "x.yaml"], ("daemon",)),
        (["--log-level", "debug", "check", "-c", "x.yaml"], ("daemon",)),
        (["--log-level=debug", "run"], ("daemon",)),
        (["messages", "--since", "1h"], FAMILIES),
        (["--help"], FAMILIES),
        (["-h", "run"], FAMILIES),
        (["--version"], FAMILIES),
        ([], FAMILIES),
    ],
)
def test_a_command_builds_only_the_parsers_it_needs(
    argv: list[str], families: tuple[str, ...]
) -> None:
    assert families_for(argv) == families


def test_run_and_check_load_no_other_commands_code(tmp_path: Path) -> None:
    """An idle daemon's memory is mostly code: `run` does not import the other commands."""
    probe = (
        "import sys; from bridge.cli import main; code = main(sys.argv[1:]); "
        "print(sorted(m for m in sys.modules if m.startswith('bridge.commands.')))"
    )
    config = tmp_path / "smsbridge.yaml"
    config.write_text("store: {path: store.sqlite3}\n")
    result = subprocess.run(
        [sys.executable, "-c", probe, "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.strip().splitlines()[-1]
    assert "bridge.commands.daemon" in loaded
    for other in ("history", "route", "oncall", "gateway", "simulator", "store"):
        assert f"bridge.commands.{other}" not in loaded
