"""Fixtures of the delivery tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from loadbell.store.queue import ClaimBatch
from loadbell.store.queue.postgres import PostgresQueue
from loadbell.store.queue.sqlite import SQLiteQueue


@pytest.fixture
def claims_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ClaimBatch]]:
    """Every claim a worker of this process makes that leased any row (hand-overs from the
    API are not claims)."""
    made: list[ClaimBatch] = []
    for cls in (SQLiteQueue, PostgresQueue):
        real = cls.claim

        async def spy(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> ClaimBatch:
            batch: ClaimBatch = await _real(self, *args, **kwargs)
            if batch.deliveries:
                made.append(batch)
            return batch

        monkeypatch.setattr(cls, "claim", spy)
    yield made
