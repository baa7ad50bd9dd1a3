"""The collector tuning `smsbridge run` applies once the daemon has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bridge.runtime import memory


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_tune_collector_freezes_what_exists_and_raises_the_young_threshold() -> None:
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] < memory.YOUNG_THRESHOLD
    built_at_start = [[n] for n in range(100)]  # containers the collector tracks
    memory.tune_collector()
    assert gc.get_threshold()[0] == memory.YOUNG_THRESHOLD
    assert gc.get_freeze_count() >= len(built_at_start)
