"""Splits a set of texts for numbers into the fewest gateway calls the limits allow."""

from __future__ import annotations

import math
from collections.abc import Iterable

from bridge.plugins.c123.models import Action, OutgoingSms, PlannedCall
from bridge.plugins.c123.validation import DEFAULT_LIMITS, SEPARATOR, Limits


def _by_text(messages: Iterable[OutgoingSms], limits: Limits) -> list[list[OutgoingSms]]:
    """Messages sharing a text, in chunks one sendOnce can carry, largest first."""
    groups: dict[str, dict[str, OutgoingSms]] = {}
    for message in messages:
        groups.setdefault(message.text, {}).setdefault(message.number, message)
    chunks: list[list[OutgoingSms]] = []
    for group in groups.values():
        items = list(group.values())
        step = limits.max_once_numbers
        chunks.extend(items[start : start + step] for start in range(0, len(items), step))
    return sorted(chunks, key=len, reverse=True)


def _batches(messages: list[OutgoingSms], limits: Limits) -> list[list[OutgoingSms]]:
    """First-fit packing: a batch holds each number at most once, and at most the batch limit."""
    batches: list[tuple[list[OutgoingSms], set[str]]] = []
    for message in messages:
        for batch, numbers in batches:
            if len(batch) < limits.max_batch_numbers and message.number not in numbers:
                batch.append(message)
                numbers.add(message.number)
                break
        else:
            batches.append(([message], {message.number}))
    return [batch for batch, _ in batches]


def _by_template(
    messages: Iterable[OutgoingSms], limits: Limits
) -> tuple[list[PlannedCall], list[OutgoingSms]]:
    """sendParam calls for the messages of each template (and parameter names), and the
    messages left over: those with no template, and a template's lone message (sendParam takes
    at least two numbers), which go out as their rendered text."""
    groups: dict[tuple[str, tuple[str, ...]], dict[tuple[str, str], OutgoingSms]] = {}
    plain: list[OutgoingSms] = []
    for message in messages:
        if not message.template:
            plain.append(message)
            continue
        key = (message.template, tuple(name for name, _ in message.params))
        groups.setdefault(key, {}).setdefault((message.number, message.text), message)
    calls: list[PlannedCall] = []
    for group in groups.values():
        for batch in _batches(list(group.values()), limits):
            if len(batch) >= limits.min_batch_numbers:
                calls.append(PlannedCall(Action.SEND_PARAM, tuple(batch)))
            else:
                plain.extend(batch)
    return calls, plain


def plan_calls(
    messages: Iterable[OutgoingSms], limits: Limits = DEFAULT_LIMITS
) -> list[PlannedCall]:
    """The fewest calls that send every (number, text) once; repeats of a pair are dropped.

    Messages of a template go by sendParam, up to the batch limit of distinct numbers a call.
    Of the others, each chunk of numbers sharing a text costs one sendOnce; the rest are packed
    into sendBatch calls. Sending the k largest chunks by sendOnce removes the most messages per
    call, so trying every k and keeping the cheapest finds the fewest calls.
    """
    param_calls, plain = _by_template(messages, limits)
    return param_calls + _plan_texts(plain, limits)


def _plan_texts(messages: Iterable[OutgoingSms], limits: Limits) -> list[PlannedCall]:
    chunks = _by_text(messages, limits)
    if not chunks:
        return []
    total = sum(len(chunk) for chunk in chunks)
    best_k, best_cost, once_items = 0, math.inf, 0
    for k in range(len(chunks) + 1):
        if k:
            once_items += len(chunks[k - 1])
        cost = k + math.ceil((total - once_items) / limits.max_batch_numbers)
        if cost < best_cost:
            best_k, best_cost = k, cost
    # A text holding the separator cannot travel in a batch, so it always goes alone.
    once = [c for i, c in enumerate(chunks) if i < best_k or SEPARATOR in c[0].text]
    rest = [
        m for i, c in enumerate(chunks) if i >= best_k and SEPARATOR not in c[0].text for m in c
    ]
    calls = [PlannedCall(Action.SEND_ONCE, tuple(chunk)) for chunk in once]
    for batch in _batches(rest, limits):
        action = Action.SEND_BATCH if len(batch) >= limits.min_batch_numbers else Action.SEND_ONCE
        calls.append(PlannedCall(action, tuple(batch)))
    return calls
