"""The log scrubber: secrets and mobile numbers gone at any depth, every other value untouched."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.logging import REDACTED, Scrubber

SECRET = "s3cr3t-Token-xyz"
NUMBER = "13912345678"
PLAIN = st.text(alphabet=string.ascii_letters + " =:/", max_size=12)

# Text that may carry the secret or the number, always apart from other digits (a longer run of
# digits is not a mobile number, and rightly stays as it is).
text = st.builds(
    lambda before, middle, after: f"{before} {middle} {after}",
    PLAIN,
    st.sampled_from(["", SECRET, NUMBER, f"+86{NUMBER}", f"{SECRET}{NUMBER}"]),
    PLAIN,
)
leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
value = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
events = st.dictionaries(st.text(min_size=1, max_size=8), value, max_size=6)


@given(events)
def test_nothing_secret_survives_at_any_depth(event: dict[str, Any]) -> None:
    scrubbed = Scrubber([SECRET])(None, "info", dict(event))
    rendered = json.dumps(scrubbed)
    assert SECRET not in rendered
    assert NUMBER not in rendered
    if SECRET in json.dumps(event):
        assert REDACTED in rendered


@given(events)
def test_values_without_text_pass_as_they_are(event: dict[str, Any]) -> None:
    scrubbed = Scrubber([SECRET])(None, "info", dict(event))
    assert scrubbed.keys() == event.keys()
    for key, original in event.items():
        if not isinstance(original, str | dict | list | tuple):
            assert scrubbed[key] is original
        elif isinstance(original, list | tuple):
            assert type(scrubbed[key]) is type(original)
            assert len(scrubbed[key]) == len(original)


def test_a_number_is_masked_the_way_people_read_it() -> None:
    scrubbed = Scrubber()(None, "info", {"to": NUMBER, "detail": ["call +8613912345678 now"]})
    assert scrubbed == {"to": "139****5678", "detail": ["call 139****5678 now"]}
