"""Tests for Alertmanager-style label matchers: parsing, formatting, anchoring, missing labels."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rules.matchers import (
    LABEL_NAME,
    HourRange,
    Matcher,
    MatcherError,
    MatchOp,
    equality_matchers,
    matches_all,
    parse_days,
    parse_hours,
    parse_matcher,
)

LABELS = {"alertname": "HighLatency", "instance": "db12", "env": "prod", "team": "web"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('env="prod"', True),
        ('env="dev"', False),
        ('env!="dev"', True),
        ('env!="prod"', False),
        ('instance=~"db[0-9]+"', True),
        ('instance=~"web[0-9]+"', False),
        ('env!~"dev|test"', True),
        ('env!~"prod|test"', False),
    ],
)
def test_each_operator(text: str, expected: bool) -> None:
    """Each of the four operators compares the label's value as Alertmanager does."""
    assert parse_matcher(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('instance=~"db"', False),  # no substring match: "db12" is more than "db"
        ('instance=~"b1"', False),
        ('instance=~"db.*"', True),
        ('instance=~"db1|db12"', True),  # the anchors wrap the whole alternation
        ('env!~"pro"', True),  # "prod" is not fully "pro", so the negation holds
    ],
)
def test_regexes_are_fully_anchored(text: str, expected: bool) -> None:
    """A regex must match the whole value, as if written ^(?:...)$."""
    assert parse_matcher(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('severity=""', True),
        ('severity!="critical"', True),
        ('severity="critical"', False),
        ('severity=~".*"', True),
        ('severity=~".+"', False),
        ('severity!~".+"', True),
    ],
)
def test_a_missing_label_is_the_empty_string(text: str, expected: bool) -> None:
    """A label the alert does not have compares as "" (Alertmanager semantics)."""
    assert parse_matcher(text).matches(LABELS) is expected


def test_unquoted_values_and_surrounding_space() -> None:
    """A value may be bare, and space around the name, operator and value is ignored."""
    matcher = parse_matcher("  team != db  ")
    assert (matcher.name, matcher.op, matcher.value) == ("team", MatchOp.NOT_EQUAL, "db")


def test_escapes_in_quoted_values() -> None:
    r"""\" \\ and \n are unescaped; other escapes keep their backslash, as regexes need."""
    assert parse_matcher(r'a="say \"hi\""').value == 'say "hi"'
    assert parse_matcher(r'a="C:\\temp"').value == "C:\\temp"
    assert parse_matcher(r'a="one\ntwo"').value == "one\ntwo"
    assert parse_matcher(r'instance=~"db\d+"').matches({"instance": "db42"})


def test_quoted_value_keeps_inner_space_and_operators() -> None:
    """Inside quotes, space and characters such as `=` and `,` are part of the value."""
    assert parse_matcher('summary=" a=b, c "').value == " a=b, c "


def test_format() -> None:
    """A matcher prints in Alertmanager's form, quoted and escaped."""
    matcher = Matcher.create("summary", MatchOp.REGEX, 'x"\\\n')
    assert str(matcher) == 'summary=~"x\\"\\\\\\n"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "severity",
            "bad matcher 'severity': expected name, an operator (=, !=, =~, !~) and a value, "
            'as in severity="critical"',
        ),
        (
            '9lives="x"',
            "bad matcher '9lives=\"x\"': expected name, an operator (=, !=, =~, !~) and a value, "
            'as in severity="critical"',
        ),
        ('team="db', "bad matcher 'team=\"db': missing closing double quote"),
        ('team="d"b"', 'bad matcher \'team="d"b"\': unescaped double quote in the value'),
        ('team=d"b', "bad matcher 'team=d\"b': unescaped double quote in the value"),
        (
            'instance=~"db[0-9"',
            "bad matcher 'instance=~\"db[0-9\"': invalid regular expression 'db[0-9': "
            "unterminated character set at position 2",
        ),
    ],
)
def test_parse_errors_name_the_matcher(text: str, message: str) -> None:
    """Bad syntax and bad regexes are errors that quote the matcher."""
    with pytest.raises(MatcherError) as info:
        parse_matcher(text)
    assert str(info.value) == message


def test_equality_shorthand() -> None:
    """`labels: {k: v}` means k="v" for each pair, and all must hold."""
    matchers = equality_matchers({"env": "prod", "team": "web"})
    assert [str(m) for m in matchers] == ['env="prod"', 'team="web"']
    assert matches_all(matchers, LABELS)
    assert not matches_all(equality_matchers({"env": "prod", "team": "db"}), LABELS)
    assert matches_all((), {})


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat-mon", {5, 6, 0}),
        (["monday", "wed-thu", "Sun"], {0, 2, 3, 6}),
        ("sat,sun", {5, 6}),
    ],
)
def test_days(days: str | list[str], expected: set[int]) -> None:
    """Days are names, full names, ranges (which may wrap the week), or lists of them."""
    assert parse_days(days) == frozenset(expected)


def test_hours() -> None:
    """Hours are minutes since midnight; 24:00 is the end of the day, and wrapping is allowed."""
    assert parse_hours("9:00-18:30") == HourRange(540, 1110)
    assert parse_hours("00:00-24:00") == HourRange(0, 1440)
    assert parse_hours("22:00-24:00") == HourRange(1320, 0)
    assert parse_hours("22:00-06:00").wraps
    assert str(parse_hours("22:00-06:00")) == "22:00-06:00"


names = st.from_regex(LABEL_NAME, fullmatch=True)
values = st.text()


@given(name=names, op=st.sampled_from([MatchOp.EQUAL, MatchOp.NOT_EQUAL]), value=values)
def test_round_trip_equality(name: str, op: MatchOp, value: str) -> None:
    """Formatting then parsing gives the same matcher for any label name and value."""
    matcher = Matcher.create(name, op, value)
    assert parse_matcher(str(matcher)) == matcher


@given(name=names, op=st.sampled_from([MatchOp.REGEX, MatchOp.NOT_REGEX]), value=values)
def test_round_trip_regex(name: str, op: MatchOp, value: str) -> None:
    """A regex matcher round-trips too, and the parsed one matches exactly the literal value."""
    matcher = Matcher.create(name, op, re.escape(value))
    parsed = parse_matcher(str(matcher))
    assert parsed == matcher
    assert parsed.matches({name: value}) is (op is MatchOp.REGEX)
