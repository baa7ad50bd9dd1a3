"""Tests for turning pydantic validation errors into the positioned config report."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Annotated, Literal

import pytest
from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import (
    ConfigError,
    ConfigModel,
    Issue,
    format_path,
    issue_at,
    load_config_text,
    load_yaml,
    validate,
    validate_at,
)


class AlertmanagerInput(ConfigModel):
    """An input selected by `type: alertmanager`."""

    type: Literal["alertmanager"]
    token: SecretStr
    send_resolved: bool = True


class SmsOutput(ConfigModel):
    """An output selected by `type: http_sms`, with a cross-field rule."""

    type: Literal["http_sms"]
    url: str
    api_key: str
    sender: str | None = None

    @model_validator(mode="after")
    def _https_only(self) -> SmsOutput:
        if not self.url.startswith("https://"):
            raise ValueError("url must start with https://")
        return self


class ChatOutput(ConfigModel):
    """An output selected by `type: mattermost`."""

    type: Literal["mattermost"]
    webhook_url: str


Output = Annotated[SmsOutput | ChatOutput, Field(discriminator="type")]


class Rule(ConfigModel):
    """A route with a field validator and an aliased key."""

    to: str
    recipients: list[str] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    retries: int = Field(3, ge=0)
    port: int | str = 0

    @field_validator("recipients")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError("recipients must not contain empty names")
        return value


class Config(ConfigModel):
    """A small top-level model in the shape of the real one."""

    name: str = "bridge"
    inputs: dict[str, AlertmanagerInput] = Field(default_factory=dict)
    outputs: dict[str, Output] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)


def report(text: str, environ: dict[str, str] | None = None) -> str:
    """Load `text` as config.yaml and return the rendered error report."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(dedent(text), "config.yaml", Config, Path("/etc"), environ=environ or {})
    return caught.value.render()


def test_valid_config_loads() -> None:
    """A correct document becomes the model, with aliases and unions resolved."""
    config = load_config_text(
        dedent(
            """\
            outputs:
              sms: {type: http_sms, url: "https://gw", api_key: k}
            rules:
              - {to: sms, continue: true}
            """
        ),
        "config.yaml",
        Config,
        Path("/etc"),
    )
    assert isinstance(config.outputs["sms"], SmsOutput)
    assert config.rules[0].continue_ is True


def test_unknown_key_with_hint() -> None:
    """An unknown key names the closest allowed key and all allowed keys."""
    assert report(
        """\
        inputs:
          am:
            type: alertmanager
            token: t
            tokn: t
        """
    ) == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:5:5: inputs.am.tokn: unknown key; did you mean 'token'? "
        "(allowed: send_resolved, token, type)"
    )


def test_unknown_key_lists_aliases_without_a_hint_when_nothing_is_close() -> None:
    """Allowed keys are listed by their alias, and no hint is made up."""
    assert report("rules:\n  - to: sms\n    zzz: 1\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:3:5: rules[0].zzz: unknown key "
        "(allowed: continue, port, recipients, retries, to)"
    )


def test_missing_key_at_parent_position_with_type() -> None:
    """A missing key is reported where its mapping is written, naming the selected type."""
    assert report(
        """\
        outputs:
          sms-primary:
            type: http_sms
            url: https://gw
        """
    ) == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:2:3: outputs.sms-primary: required key 'api_key' not provided "
        "(type 'http_sms')"
    )


def test_missing_key_in_empty_file_has_no_position() -> None:
    """With nothing written, a missing top-level key is reported against the file."""
    with pytest.raises(ConfigError) as caught:
        load_config_text("", "config.yaml", Rule, Path("/etc"))
    assert caught.value.render() == (
        "error: config.yaml has 1 problem\nconfig.yaml: required key 'to' not provided"
    )


def test_wrong_type() -> None:
    """A wrong type says what was expected and what was written, at the value."""
    assert report("rules:\n  - to: sms\n    retries: many\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:3:14: rules[0].retries: expected an integer, got 'many'"
    )


def test_number_where_text_is_expected_gets_a_quote_hint() -> None:
    """A number YAML read where text is wanted suggests quoting it."""
    assert report("name: 1234\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:7: name: expected a string, got 1234; quote it to use it as text"
    )


def test_constraint_and_union_alternatives() -> None:
    """Constraints read in words, and union alternatives merge into one line."""
    assert report("rules:\n  - to: sms\n    retries: -1\n    port: [1]\n") == (
        "error: config.yaml has 2 problems\n"
        "config.yaml:3:14: rules[0].retries: expected a value of at least 0, got -1\n"
        "config.yaml:4:11: rules[0].port: expected an integer or a string, got a list"
    )


def test_secret_values_are_never_echoed() -> None:
    """SecretStr fields, secret-named fields and environment values show `<hidden>`."""
    text = report(
        """\
        inputs:
          am: {type: alertmanager, token: 987654321}
        outputs:
          sms: {type: http_sms, url: "https://gw", api_key: 123456789}
        rules:
          - to: sms
            retries: ${RETRIES}
        """,
        {"RETRIES": "hunter2"},
    )
    assert text == (
        "error: config.yaml has 3 problems\n"
        "config.yaml:2:35: inputs.am.token: expected a string, got <hidden>; "
        "quote it to use it as text\n"
        "config.yaml:4:53: outputs.sms.api_key: expected a string, got <hidden>; "
        "quote it to use it as text\n"
        "config.yaml:7:14: rules[0].retries: expected an integer, got <hidden>"
    )
    for secret in ("987654321", "123456789", "hunter2"):
        assert secret not in text


def test_model_validator_message_at_the_mapping() -> None:
    """A model validator's ValueError is reported at its mapping without pydantic's prefix."""
    assert report("outputs:\n  sms: {type: http_sms, url: 'http://gw', api_key: k}\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:2:3: outputs.sms: url must start with https://"
    )


def test_field_validator_message_at_the_value() -> None:
    """A field validator's ValueError is reported at the field's value."""
    assert report("rules:\n  - to: sms\n    recipients: [a, '']\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:3:17: rules[0].recipients: recipients must not contain empty names"
    )


def test_unknown_discriminator_names_allowed_types() -> None:
    """An unknown `type` suggests the closest one and lists every allowed type."""
    assert report("outputs:\n  sms2:\n    type: http_smss\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:3:11: outputs.sms2.type: unknown type 'http_smss'; "
        "did you mean 'http_sms'? (allowed: http_sms, mattermost)"
    )


def test_missing_discriminator_names_allowed_types() -> None:
    """A mapping without `type` says which types exist."""
    assert report("outputs:\n  sms2:\n    url: x\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:2:3: outputs.sms2: required key 'type' not provided "
        "(allowed: http_sms, mattermost)"
    )


def test_several_problems_sorted_by_position() -> None:
    """Loader and validation problems come together in one report, in file order."""
    assert report(
        """\
        rules:
          - to: sms
            retries: lots
        name: 5
        inputs:
          am: {type: alertmanager, token: "${AM_TOKEN}", extra: 1}
        rules: []
        """
    ) == (
        "error: config.yaml has 4 problems\n"
        "config.yaml:4:7: name: expected a string, got 5; quote it to use it as text\n"
        "config.yaml:6:35: inputs.am.token: environment variable 'AM_TOKEN' is not set\n"
        "config.yaml:6:50: inputs.am.extra: unknown key (allowed: send_resolved, token, type)\n"
        "config.yaml:7:1: rules: duplicate key 'rules'; first written at line 1"
    )


def test_issue_at_for_semantic_checks() -> None:
    """Callers add cross-reference problems at a path, positioned like validation problems."""
    document = load_yaml("rules:\n  - to: sms-primay\n", "config.yaml", {})
    config = validate(document, Config)
    issues = [
        issue_at(document, ("rules", i, "to"), f"unknown output '{rule.to}'; defined outputs: sms")
        for i, rule in enumerate(config.rules)
    ]
    assert ConfigError(issues).render() == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:2:9: rules[0].to: unknown output 'sms-primay'; defined outputs: sms"
    )


def test_validate_at_positions_a_plugins_options() -> None:
    """Options validated on their own, as plugin configs are, keep their place in the file."""
    document = load_yaml(
        "outputs:\n  chat:\n    type: mattermost\n    webhook: x\n", "config.yaml", {}
    )
    with pytest.raises(ConfigError) as caught:
        validate_at(document, ("outputs", "chat"), ChatOutput)
    assert caught.value.render() == (
        "error: config.yaml has 2 problems\n"
        "config.yaml:2:3: outputs.chat: required key 'webhook_url' not provided\n"
        "config.yaml:4:5: outputs.chat.webhook: unknown key; did you mean 'webhook_url'? "
        "(allowed: type, webhook_url)"
    )


def test_validate_at_omits_the_containers_keys() -> None:
    """`omit` leaves out a key the container owns (an instance's `type:`), keeping positions."""
    document = load_yaml(
        "outputs:\n  chat:\n    type: mattermost\n    webhook: x\n", "config.yaml", {}
    )

    class Options(ConfigModel):
        webhook_url: str

    with pytest.raises(ConfigError) as caught:
        validate_at(document, ("outputs", "chat"), Options, omit={"type"})
    assert caught.value.render() == (
        "error: config.yaml has 2 problems\n"
        "config.yaml:2:3: outputs.chat: required key 'webhook_url' not provided\n"
        "config.yaml:4:5: outputs.chat.webhook: unknown key; did you mean 'webhook_url'? "
        "(allowed: type, webhook_url)"
    )


def test_root_must_be_a_mapping() -> None:
    """A list at the top level is a type problem without a path."""
    assert report("- a\n- b\n") == (
        "error: config.yaml has 1 problem\nconfig.yaml:1:1: expected a mapping, got a list"
    )


def test_format_path() -> None:
    """Paths are dotted, with list indexes in brackets."""
    assert format_path(("rules", 0, "match", "labels", 2)) == "rules[0].match.labels[2]"
    assert format_path(()) == ""


def test_issue_without_position() -> None:
    """An issue with no line renders as `file: path: message`."""
    issue = Issue(("gateway",), "is broken", None, None, "config.yaml")
    assert issue.render() == "config.yaml: gateway: is broken"


def test_config_error_needs_issues() -> None:
    """An error with nothing in it is a programming mistake."""
    with pytest.raises(ValueError, match="at least one issue"):
        ConfigError([])
