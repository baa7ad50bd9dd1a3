"""Tests for line-aware YAML loading, environment substitution and file reading."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field

from bridge.config import (
    ConfigError,
    ConfigModel,
    Document,
    Mark,
    load_config,
    load_config_text,
    load_yaml,
)


class Small(ConfigModel):
    """A tiny model so loader problems can be seen in the full report."""

    name: str = "bridge"
    port: int = 8080
    token: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


def report(text: str, environ: dict[str, str] | None = None) -> str:
    """Load `text` as config.yaml and return the rendered error report."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(dedent(text), "config.yaml", Small, Path("/etc"), environ=environ or {})
    return caught.value.render()


def load(text: str, environ: dict[str, str] | None = None) -> Document:
    """Load `text` without validating it."""
    return load_yaml(dedent(text), "config.yaml", environ or {})


def test_positions_of_keys_and_values() -> None:
    """Every key and value is recorded at its 1-based line and column, lists by index."""
    document = load(
        """\
        gateway:
          timeout:
            total: 30s
        rules:
          - to: sms
        """
    )
    assert document.data == {"gateway": {"timeout": {"total": "30s"}}, "rules": [{"to": "sms"}]}
    assert document.keys[("gateway", "timeout", "total")] == Mark(3, 5)
    assert document.values[("gateway", "timeout", "total")] == Mark(3, 12)
    assert document.values[("rules", 0)] == Mark(5, 5)
    assert document.keys[("rules", 0, "to")] == Mark(5, 5)
    assert document.issues == ()


def test_missing_path_falls_back_to_nearest_ancestor() -> None:
    """A path that is not written points at the closest part of it that is."""
    document = load("gateway:\n  url: x\n")
    assert document.key_mark(("gateway", "timeout")) == Mark(1, 1)
    assert document.value_mark(("gateway", "url", "deeper")) == Mark(2, 8)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n"])
def test_empty_file_is_an_empty_mapping(text: str) -> None:
    """A file with no content loads as an empty mapping, not as null."""
    document = load(text)
    assert document.data == {}
    assert document.issues == ()


def test_duplicate_key_is_a_problem() -> None:
    """Two equal keys in one mapping are reported instead of silently keeping the last."""
    assert report(
        """\
        name: a
        port: 1
        name: b
        """
    ) == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:3:1: name: duplicate key 'name'; first written at line 1"
    )


def test_yaml_syntax_error_is_one_problem_with_its_position() -> None:
    """A syntax error becomes a single positioned problem and stops validation."""
    assert report(
        """\
        name: bridge
        labels: {team: ops
        port: 1
        """
    ) == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:3:5: invalid YAML: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping started at line 2)"
    )


def test_tab_indentation_gets_a_hint() -> None:
    """A tab where indentation is expected says to use spaces."""
    assert report("labels:\n\tteam: ops\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token; "
        "indent with spaces, not tabs"
    )


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("labels: {team: ${TEAM}}\n", "${TEAM}"),
        ("labels: {a: 1, team: x${TEAM}}\n", "${TEAM}"),
        ("token: [${TOKEN}]\n", "${TOKEN}"),
        ("labels: {team: ${TEAM\n", "${NAME}"),
    ],
)
def test_unquoted_reference_in_braces_gets_a_hint(text: str, reference: str) -> None:
    """A ${NAME} inside {...} or [...] breaks YAML; the message says to quote it."""
    assert report(text).endswith(
        f'; inside {{...}} or [...] a ${{NAME}} must be quoted: "{reference}"'
    )


def test_other_syntax_errors_get_no_quoting_hint() -> None:
    """The hint is only given where a reference broke the flow collection."""
    assert "quoted" not in report("labels: {team: ops}}\n")


def test_environment_substitution() -> None:
    """`${NAME}` is replaced whole or embedded, and `$${` stays a literal `${`."""
    document = load(
        """\
        token: ${TOKEN}
        name: bridge-${SITE}-1
        labels: {literal: "$${TOKEN}"}
        """,
        {"TOKEN": "s3cret", "SITE": "bj"},
    )
    assert document.data == {
        "token": "s3cret",
        "name": "bridge-bj-1",
        "labels": {"literal": "${TOKEN}"},
    }
    assert document.from_environment == {("token",), ("name",)}


def test_unset_variable_names_variable_and_path_only() -> None:
    """An unset variable is reported once, at its path, and validation stays quiet about it."""
    text = report("token: ${SMS_TOKEN}\nport: ${PORT}\n", {"OTHER": "s3cret"})
    assert text == (
        "error: config.yaml has 2 problems\n"
        "config.yaml:1:8: token: environment variable 'SMS_TOKEN' is not set\n"
        "config.yaml:2:7: port: environment variable 'PORT' is not set"
    )


def test_malformed_reference() -> None:
    """A `${` that is not `${NAME}` is a problem with the way to write it."""
    assert report("name: ${not a name}\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:7: name: malformed '${'; write ${NAME}, or $${ for a literal '${'"
    )


def test_non_string_keys_are_rejected() -> None:
    """Keys YAML reads as booleans or numbers must be quoted to be used as names."""
    assert report(
        """\
        labels:
          on: call
          404: missing
        """
    ) == (
        "error: config.yaml has 2 problems\n"
        'config.yaml:2:3: labels.on: this key is read as a boolean; quote it ("on") to use it '
        "as text\n"
        'config.yaml:3:3: labels.404: this key is read as a number; quote it ("404") to use it '
        "as text"
    )


def test_env_tag_points_to_the_supported_syntax() -> None:
    """The `!env` tag used by other tools is refused with the `${NAME}` spelling."""
    assert report("token: !env SMS_TOKEN\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:8: token: unsupported tag '!env'; environment variables are written ${NAME}"
    )


def test_merge_keys_allow_overrides() -> None:
    """`<<: *anchor` merges, and an explicit key overriding a merged one is no duplicate."""
    document = load(
        """\
        base: &base {team: ops, severity: low}
        labels:
          <<: *base
          severity: high
        """
    )
    assert document.data["labels"] == {"team": "ops", "severity": "high"}
    assert document.keys[("labels", "severity")] == Mark(4, 3)
    assert document.issues == ()


def test_recursive_alias_is_a_problem() -> None:
    """An alias inside the list it names is reported rather than recursing forever."""
    document = load("loop: &a [*a]\n")
    assert [issue.render() for issue in document.issues] == [
        "config.yaml:1:7: loop[0]: an alias refers to the mapping or list that contains it"
    ]


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    """A file that cannot be read is a single problem without a position."""
    path = tmp_path / "config.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, Small)
    assert caught.value.render() == (
        f"error: {path} has 1 problem\n{path}: cannot read the file: no such file or directory"
    )


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    """A valid file loads into the model."""
    path = tmp_path / "config.yaml"
    path.write_text("name: edge\nport: 9000\n", encoding="utf-8")
    assert load_config(path, Small, environ={}) == Small(name="edge", port=9000)


_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text().filter(lambda text: "${" not in text),
)


@given(st.dictionaries(_KEYS, _SCALARS, max_size=12))
def test_recorded_key_lines_match_the_dumped_text(data: dict[str, object]) -> None:
    """For any mapping dumped by `yaml.safe_dump`, each key's mark is where that key is written."""
    text = yaml.safe_dump(data, sort_keys=False)
    document = load_yaml(text, "config.yaml", {})
    lines = text.split("\n")
    assert document.data == data
    for key in data:
        mark = document.keys[(key,)]
        written = lines[mark.line - 1][mark.column - 1 :]
        assert written.startswith((f"{key}:", f"'{key}':"))
