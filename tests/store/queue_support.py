"""What the queue's tests share: a finished attempt for a claimed delivery, and rows read
back on an engine of their own."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.queue import Claimed, Completion
from loadbell.values import Outcome, Verdict


def done(item: Claimed, status: str = "succeeded", number: int | None = None) -> Completion:
    """``item``'s next attempt, ended with ``status`` (succeeded: delivered; else a retry)."""
    verdict = Verdict.DELIVERED if status == "succeeded" else Verdict.RETRY
    return Completion(
        delivery_id=item.id,
        series=item.series,
        attempt_number=number or item.attempts + 1,
        started_at=datetime.now(UTC),
        outcome=Outcome(verdict, status_code=204, request_headers={"A": "b"}),
        status=status,
        next_attempt_at=time.time(),
        lease_until=item.lease_until,
        channel_id=item.channel_id,
        order_key=item.order_key,
    )


async def rows(settings: Settings, query: Any) -> list[Any]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(query)).all())
    finally:
        await engine.dispose()
