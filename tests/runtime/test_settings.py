"""Loading a whole config: sections, adapter options, references and rules, all at once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import tempfile
from pathlib import Path

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.cli import main
from bridge.config import ConfigError, Issue
from bridge.config.models import ServerConfig, SimulatorConfig, StoreConfig
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.testing import DaemonFactory, post_json

ROOT = Path(__file__).resolve().parents[2]


def problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value.render().replace(str(path), "config.yaml")


def test_example_config_is_valid() -> None:
    """config.example.yaml loads as it is."""
    settings = load_settings(ROOT / "config.example.yaml")
    assert settings.config.gateway is None
    assert sorted(settings.inputs) == ["am", "hook"]
    assert settings.rules.names == ("page-critical", "replies-to-oncall", "low-balance")


def test_example_config_runs_against_the_simulator(tmp_path: Path) -> None:
    """The example starts a daemon on the built-in simulator, takes an alert, and is ready."""
    settings = load_settings(ROOT / "config.example.yaml")
    config = settings.config.model_copy(
        update={
            "server": ServerConfig(listen="127.0.0.1:0"),
            "store": StoreConfig(path=tmp_path / "outbox.sqlite3"),
            "simulator": SimulatorConfig(port=0),
        }
    )
    # Free ports only: a demo running beside the tests holds the example's fixed ones.
    assert config.console is not None
    config = config.model_copy(
        update={"console": config.console.model_copy(update={"listen": "127.0.0.1:0"})}
    )

    async def scenario() -> tuple[int, dict[str, object], int]:
        daemon = Daemon(settings.__class__(**{**settings.__dict__, "config": config}))
        await daemon.start()
        try:
            await daemon.poller.poll_balance()
            await daemon.processor.drain()
            alert = {
                "version": "4",
                "groupKey": "g",
                "status": "firing",
                "receiver": "r",
                "groupLabels": {},
                "commonLabels": {},
                "commonAnnotations": {},
                "externalURL": "",
                "truncatedAlerts": 0,
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": "X", "severity": "critical"},
                        "annotations": {},
                        "startsAt": "2026-11-25T00:00:00Z",
                        "fingerprint": "f",
                    }
                ],
            }
            headers = {"Authorization": "Bearer demo-token-change-me"}
            async with aiohttp.ClientSession() as http:
                async with http.post(daemon.url + "/hooks/am", json=alert, headers=headers) as r:
                    accepted = r.status, await r.json()
                async with http.get(daemon.url + "/readyz") as r:
                    ready = r.status
            return accepted[0], accepted[1], ready
        finally:
            await daemon.stop()

    status, body, ready = asyncio.run(scenario())
    assert (status, body) == (200, {"accepted": 1, "duplicate": False, "rejected": []})
    assert ready == 200


def test_unknown_type_and_bad_options(tmp_path: Path) -> None:
    """An unknown adapter type lists the installed ones; a bad option is named with its line."""
    text = problems(
        tmp_path,
        """
inputs:
  am:
    type: alertmanagr
  hook:
    type: webhook
    allow_unauthenticated: true
    kind: alarm
outputs:
  sms:
    type: http_callback
    url: http://x
""",
    )
    assert (
        "config.yaml:4:11: inputs.am.type: unknown input type 'alertmanagr'; installed "
        "types: alertmanager, dingtalk, feishu, grafana, mattermost, slack, telegram, "
        "webhook, wecom, zabbix" in text
    )
    assert "config.yaml:8:11: inputs.hook.kind:" in text
    assert "config.yaml:11:5: outputs.sms: 'sms' is the built-in output" in text


def test_shape_and_reference_problems_together(tmp_path: Path) -> None:
    """A misspelt key elsewhere does not hide a rule's unknown contact: both are reported."""
    text = problems(
        tmp_path,
        """
server:
  listn: 1
contacts:
  alice: "15102110086"
rules:
  - name: r
    sms: {to: [alise]}
""",
    )
    assert text.startswith("error: config.yaml has 2 problems")
    assert "config.yaml:3:3: server.listn: unknown key; did you mean 'listen'?" in text
    assert "rules[0].sms.to[0]: unknown contact or group 'alise'; did you mean 'alice'?" in text


def test_secrets_are_not_printed(tmp_path: Path) -> None:
    """A malformed secret is reported without its value."""
    text = problems(
        tmp_path,
        """
outputs:
  cb:
    type: http_callback
    url: notaurl
    secret: TopSecretValue123
""",
    )
    assert "outputs.cb.url" in text
    assert "TopSecretValue123" not in text


def test_adapter_options_keep_what_the_file_sets(tmp_path: Path) -> None:
    """Options are validated once, from the file: defaults do not count as written."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "inputs:\n"
        "  hook: {type: webhook, auth: {hmac: {secret: s3cret-value}}}\n"
        "  graf: {type: grafana, auth: {hmac: {secret: s3cret-value}}}\n"
    )
    settings = load_settings(path)
    _, hook = settings.inputs["hook"]
    _, graf = settings.inputs["graf"]
    assert hook.model_fields_set == {"auth"}
    assert graf.auth.hmac.model_fields_set == {"secret"}  # type: ignore[attr-defined]


def test_check_takes_a_webhook_signed_by_hmac_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A webhook input with only auth.hmac passes `check`: no traceback, exit 0."""
    path = tmp_path / "config.yaml"
    path.write_text("inputs:\n  hook:\n    type: webhook\n    auth:\n      hmac: {secret: abc}\n")
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr()
    assert "OK (1 inputs" in out.out
    assert out.err == ""


GRAFANA = """
inputs:
  graf:
    type: grafana
    auth:
      hmac: {secret: grafana-hmac-secret}
"""


async def test_grafana_fallback_signature_header_through_the_daemon(
    smsbridge_daemon: DaemonFactory,
) -> None:
    """With the default header, Grafana's X-Grafana-Alert-Signature is accepted by a daemon
    built from a config file (it was refused with 401)."""
    daemon = await smsbridge_daemon(GRAFANA)
    body = (ROOT / "tests/plugins/payloads/grafana_firing.json").read_bytes()
    signature = hmac.new(b"grafana-hmac-secret", body, hashlib.sha256).hexdigest()
    status, _ = await post_json(
        daemon, "/hooks/graf", body, {"X-Grafana-Alert-Signature": signature}
    )
    assert status == 200
    status, _ = await post_json(daemon, "/hooks/graf", body)
    assert status == 401


def test_secret_files_are_read_when_the_config_loads(tmp_path: Path) -> None:
    """A missing or empty secret file is a config problem `check` reports, not a crash at start."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    text = problems(
        tmp_path,
        f"""
outputs:
  a: {{type: http_callback, url: "http://x", secret_file: {tmp_path / "missing"}}}
  b: {{type: http_callback, url: "http://x", secret_file: {empty}}}
""",
    )
    assert "outputs.a.secret_file: cannot read " in text
    assert "missing: no such file or directory" in text
    assert f"outputs.b.secret_file: {empty} is empty" in text


def test_the_gateway_is_configured_in_one_place(tmp_path: Path) -> None:
    """A `type: c123` output is refused with a pointer to `gateway:`."""
    text = problems(
        tmp_path,
        """
outputs:
  sms2:
    type: c123
    account: 1001@500008880001
    authkey: ${C123_AUTHKEY}
""",
    )
    assert text.startswith("error: config.yaml has 2 problems")
    assert (
        "config.yaml:4:11: outputs.sms2.type: the c123 gateway is configured under gateway:" in text
    )


def test_every_problem_at_once(tmp_path: Path) -> None:
    """Unknown names are reported beside every other problem: an unset variable, broken
    entries, and problems in the same rule; broken contacts and groups are not called unknown."""
    text = problems(
        tmp_path,
        """
contacts:
  alice: "15102110086"
  bob: "123"
groups:
  oncall: [alice, bob]
  broken: {a: 1}
inputs:
  am:
    type: alertmanager
    auth: {bearer: "${AM_TOKEN}"}
rules:
  - name: first
    match: {source: [am, y]}
    sms: {to: [alise, bob, broken], tmeplate: "x", group_wait: soon}
  - name: second
    sms: {to: [oncal]}
  - match: {kind: alert}
  - name: fourth
    post: {to: nowhere}
""",
    )
    lines = text.splitlines()
    assert lines == [
        "error: config.yaml has 10 problems",
        "config.yaml:4:8: contacts.bob.number: '123' is not a mainland mobile number "
        "(11 digits starting with 1, optionally prefixed by +86 or 86)",
        "config.yaml:7:11: groups.broken: expected a list, got a mapping",
        "config.yaml:11:20: inputs.am.auth.bearer: environment variable 'AM_TOKEN' is not set",
        "config.yaml:14:26: rules[0].match.source[1]: unknown input 'y' (defined: am)",
        "config.yaml:15:16: rules[0].sms.to[0]: unknown contact or group 'alise'; did you mean "
        "'alice'? (defined: alice, bob, broken, oncall)",
        lines[6],
        "config.yaml:15:64: rules[0].sms.group_wait: expected a duration like '30s' or '5m', "
        "got 'soon'",
        "config.yaml:17:16: rules[1].sms.to[0]: unknown contact or group 'oncal'; did you mean "
        "'oncall'? (defined: alice, bob, broken, oncall)",
        "config.yaml:18:5: rules[2]: required key 'name' not provided",
        "config.yaml:20:16: rules[3].post.to: unknown output 'nowhere' (defined: sms; or "
        "'conversation')",
    ]
    assert lines[6].startswith("config.yaml:15:37: rules[0].sms.tmeplate: unknown key;")


def test_a_section_of_the_wrong_shape_stops_the_reference_checks(tmp_path: Path) -> None:
    """With no usable contacts section, names are not checked: they would all look unknown."""
    text = problems(
        tmp_path,
        """
contacts: [alice]
rules:
  - name: r
    sms: {to: [alice]}
""",
    )
    assert text.splitlines() == [
        "error: config.yaml has 1 problem",
        "config.yaml:2:11: contacts: expected a mapping, got a list",
    ]


def uncommented(text: str, blocks: tuple[str, ...]) -> str:
    """The example with its commented-out entries named in `blocks` written in."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().removeprefix("# ").split(":")[0] not in blocks or "# " not in line:
            continue
        prefix = line[: line.index("# ") + 2]  # e.g. "  # "
        follow = index
        while follow < len(lines) and lines[follow].startswith(prefix):
            body = lines[follow][len(prefix) :]
            if follow > index and not body.startswith(" "):
                break  # the next entry
            lines[follow] = prefix[:-2] + body
            follow += 1
    return "\n".join(lines).replace("outputs: {}", "outputs:") + "\n"


def test_example_configs_commented_entries_load(tmp_path: Path) -> None:
    """The example's commented Grafana, Zabbix, Slack and callback entries load when written in
    (a ${NAME} inside {...} must be quoted, which the example does)."""
    text = uncommented(
        (ROOT / "config.example.yaml").read_text(),
        ("grafana", "zabbix", "slack-in", "callback", "slack-out"),
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    names = ("GRAFANA_TOKEN", "GRAFANA_HMAC", "ZABBIX_TOKEN", "SLACK_SIGNING_SECRET")
    environ = {name: f"{name.lower()}-value" for name in names}
    environ |= {"CALLBACK_SECRET": "callback-secret", "SLACK_BOT_TOKEN": "xoxb-1-2"}
    settings = load_settings(path, environ=environ)
    assert sorted(settings.inputs) == ["am", "grafana", "hook", "slack-in", "zabbix"]
    assert sorted(settings.outputs) == ["callback", "slack-out"]


def test_an_unquoted_variable_in_braces_says_how_to_fix_it(tmp_path: Path) -> None:
    """YAML cannot read `{bearer: ${TOKEN}}`; the message says to quote it."""
    text = problems(tmp_path, "inputs:\n  g:\n    type: grafana\n    auth: {bearer: ${TOKEN}}\n")
    assert text.splitlines()[1] == (
        "config.yaml:4:21: invalid YAML: expected ',' or '}', but got '{' (while parsing a flow "
        "mapping started at line 4); inside {...} or [...] a ${NAME} must be quoted: "
        '"${TOKEN}"'
    )


TEMPLATES = """
rules:
  - name: page
    sms:
      to: ["15102110086"]
      template: "{{ annotation.summary }} {{ labels.alertname }} {% set y = 1 %}{{ y }}"
      group_template: "{{ alert[0].text }} {{ count }} {{ range(2)|list }}"
  - name: chat
    post: {to: conversation, template: "{{ txt }} {{ data.anything }}"}
"""


def test_check_warns_about_template_variables_nothing_provides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt variable loads (exit 0) and is warned about, with file:line and a hint."""
    path = tmp_path / "config.yaml"
    path.write_text(TEMPLATES)
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"{path}: OK")
    warnings = out.err.replace(str(path), "config.yaml").splitlines()
    assert warnings == [
        "warning: config.yaml:6:17: rules[0].sms.template: no event provides 'annotation', so it "
        "renders empty (variables: data, event, fingerprint, kind, labels, now, source, status, "
        "summary, text; a payload's own fields are under data, e.g. data.annotations)",
        "warning: config.yaml:7:23: rules[0].sms.group_template: a group summary has no 'alert', "
        "so it renders empty; did you mean 'alerts'? (variables: alerts, common_labels, count, "
        "firing, group_labels, now, resolved, status)",
        "warning: config.yaml:9:40: rules[1].post.template: no event provides 'txt', so it "
        "renders empty; did you mean 'text'? (variables: data, event, fingerprint, kind, labels, "
        "now, source, status, summary, text; a payload's own fields are under data, e.g. "
        "data.annotations)",
    ]


def test_default_templates_give_no_warnings() -> None:
    """The shipped example (default templates and its own) loads without a warning."""
    assert load_settings(ROOT / "config.example.yaml").warnings == ()


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 20000000000),
    st.sampled_from(["alice", "oncall", "15102110086", "x", "", "30s", "sms", "alert", "am"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["name", "to", "sms", "match", "post", "type", "number", "kind"]),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=12,
)
_SECTIONS = st.fixed_dictionaries(
    {},
    optional={
        "contacts": st.dictionaries(st.sampled_from(["alice", "bob"]), _VALUES, max_size=2),
        "groups": st.dictionaries(st.sampled_from(["oncall", "alice"]), _VALUES, max_size=2),
        "inputs": st.dictionaries(st.sampled_from(["am", "hook"]), _VALUES, max_size=2),
        "outputs": st.dictionaries(st.sampled_from(["cb", "sms"]), _VALUES, max_size=2),
        "rules": st.lists(_VALUES, max_size=3),
        "server": _VALUES,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_SECTIONS)
def test_any_config_loads_or_lists_its_problems(document: dict[str, object]) -> None:
    """Whatever the sections hold, loading ends in Settings or a ConfigError: the search for
    problems beside the first ones never raises anything else."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(yaml.safe_dump(document))
        issues: tuple[Issue, ...] = ()
        try:
            load_settings(path, environ={})
        except ConfigError as exc:
            issues = exc.issues
    assert all(issue.message and issue.file == str(path) for issue in issues)
    assert len(set(issues)) == len(issues)


def test_unknown_page_policy_is_refused_with_its_line(tmp_path: Path) -> None:
    """A rule paging through a policy that `oncall.policies` does not define fails the check at
    the line of the name."""
    text = problems(
        tmp_path,
        "contacts: {alice: '15102110086'}\n"
        "oncall:\n"
        "  policies:\n"
        "    ops: {steps: [{notify: [alice]}]}\n"
        "rules:\n"
        "  - name: critical\n"
        "    page: {policy: opz}\n",
    )
    assert "config.yaml:7:20: rules[0].page.policy: unknown policy 'opz'" in text
    assert "did you mean 'ops'?" in text
