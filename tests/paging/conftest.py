"""The `desk` fixture: paging on a real store, on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bridge.store import Store
from tests.paging.desk import Desk


@pytest.fixture
async def desk(store_factory: Callable[[], Store]) -> AsyncIterator[Desk]:
    """Paging on a store of each backend."""
    store = store_factory()
    await store.open()
    found = Desk(store, store_factory)
    yield found
    await found.store.close()
