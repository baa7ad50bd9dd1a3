"""The collector tuning `smsbridge run` applies once the daemon has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bridge.runtime import memory


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_tune_collector_freezes_what_exists_and_raises_the_young_threshold() -> None:
    built_at_start = [object() for _ in range(10)]  # noqa: F841 - alive while tuned
    memory.tune_collector()
    assert gc.get_threshold()[0] == memory.YOUNG_THRESHOLD
    assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    made_later = [[] for _ in range(100)]  # containers the collector still tracks
    assert gc.get_freeze_count() == frozen
    assert made_later
