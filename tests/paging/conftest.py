"""The `desk` fixture: paging on a real store in the test's folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.store import Store
from tests.paging.desk import Desk


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    store = Store(tmp_path / "s.db", synchronous="OFF")
    await store.open()
    found = Desk(store, tmp_path / "s.db")
    yield found
    await found.store.close()
