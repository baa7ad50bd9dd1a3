"""Splitting sends into the fewest gateway calls within the limits."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bridge.plugins.c123.models import Action, OutgoingSms
from bridge.plugins.c123.planning import plan_calls
from bridge.plugins.c123.validation import Limits


def sms(number: int, text: str) -> OutgoingSms:
    return OutgoingSms(f"1{number:010d}", text, 1, Decimal("0.10"))


def test_one_text_to_a_thousand_numbers_is_one_call() -> None:
    """A thousand numbers sharing a text fit one sendOnce."""
    calls = plan_calls(sms(n, "disk full") for n in range(1000))
    assert [(c.action, len(c.messages)) for c in calls] == [(Action.SEND_ONCE, 1000)]


def test_a_thousand_own_texts_are_ten_batches() -> None:
    """A thousand per-number texts fill ten sendBatch calls of a hundred."""
    calls = plan_calls(sms(n, f"code {n}") for n in range(1000))
    assert [(c.action, len(c.messages)) for c in calls] == [(Action.SEND_BATCH, 100)] * 10


def test_shared_texts_go_once_and_the_rest_batch() -> None:
    """Large groups go by sendOnce; leftovers share one batch."""
    messages = [sms(n, "outage") for n in range(300)] + [sms(1000 + n, f"x{n}") for n in range(50)]
    calls = plan_calls(messages)
    assert [(c.action, len(c.messages)) for c in calls] == [
        (Action.SEND_ONCE, 300),
        (Action.SEND_BATCH, 50),
    ]


def test_small_groups_fold_into_a_batch() -> None:
    """Two texts for two numbers each are one batch of four, not two calls."""
    messages = [sms(1, "a"), sms(2, "a"), sms(3, "b"), sms(4, "b")]
    assert [(c.action, len(c.messages)) for c in plan_calls(messages)] == [(Action.SEND_BATCH, 4)]


def test_a_single_message_is_send_once() -> None:
    """One message alone cannot be a batch (batches take 2..100)."""
    assert [c.action for c in plan_calls([sms(1, "hello")])] == [Action.SEND_ONCE]


def test_same_number_never_twice_in_a_batch() -> None:
    """Two texts for one number go in different calls."""
    calls = plan_calls([sms(1, "a"), sms(1, "b"), sms(2, "c")])
    for call in calls:
        assert len(set(call.numbers)) == len(call.numbers)
    assert sum(len(c.messages) for c in calls) == 3


def test_separator_text_never_batched() -> None:
    """A text containing the batch separator travels by sendOnce."""
    calls = plan_calls([sms(1, "a{|}b"), sms(2, "c")])
    assert all(c.action is Action.SEND_ONCE for c in calls)


def test_exact_repeats_are_sent_once() -> None:
    """The same text to the same number twice in one send is one message."""
    calls = plan_calls([sms(1, "a"), sms(1, "a")])
    assert [len(c.messages) for c in calls] == [1]


small = Limits(max_once_numbers=7, max_batch_numbers=5)


@given(st.lists(st.tuples(st.integers(0, 12), st.sampled_from("abcdef") | st.text(max_size=3))))
def test_every_pair_sent_exactly_once_within_limits(pairs: list[tuple[int, str]]) -> None:
    """Every distinct (number, text) lands in exactly one call, each call within its limits."""
    messages = [sms(n, t or "-") for n, t in pairs]
    calls = plan_calls(messages, small)
    sent = Counter((m.number, m.text) for c in calls for m in c.messages)
    assert set(sent) == {(m.number, m.text) for m in messages}
    assert all(count == 1 for count in sent.values())
    for call in calls:
        assert len(set(call.numbers)) == len(call.numbers)
        if call.action is Action.SEND_ONCE:
            assert len({m.text for m in call.messages}) == 1
            assert len(call.messages) <= small.max_once_numbers
        else:
            assert 2 <= len(call.messages) <= small.max_batch_numbers


def templated(number: int, name: str, template: str = "Dear {p1}") -> OutgoingSms:
    return OutgoingSms(
        f"1{number:010d}",
        template.replace("{p1}", name),
        1,
        Decimal("0.10"),
        template,
        (("p1", name),),
    )


def test_a_template_goes_by_send_param_a_hundred_numbers_a_call() -> None:
    """250 messages of one template are three sendParam calls; plain texts plan as before."""
    calls = plan_calls([templated(n, f"n{n}") for n in range(250)] + [sms(1, "x")])
    assert [(c.action, len(c.messages)) for c in calls] == [
        (Action.SEND_PARAM, 100),
        (Action.SEND_PARAM, 100),
        (Action.SEND_PARAM, 50),
        (Action.SEND_ONCE, 1),
    ]


def test_a_number_twice_in_a_template_takes_two_calls_and_a_lone_one_its_text() -> None:
    """sendParam takes each number once and at least two numbers: a template's lone message
    goes by sendOnce with its rendered text."""
    calls = plan_calls([templated(1, "a"), templated(2, "b"), templated(1, "c")])
    assert [(c.action, [m.text for m in c.messages]) for c in calls] == [
        (Action.SEND_PARAM, ["Dear a", "Dear b"]),
        (Action.SEND_ONCE, ["Dear c"]),
    ]
