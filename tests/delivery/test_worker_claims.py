"""How much a worker claims: holds sized by each channel's pace, claims of many rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa

from conftest import seed, start_server, webhook_channel
from loadbell.delivery.holds import DEFAULT_HOLD, MAX_HOLD, MIN_HOLD, Holds
from loadbell.delivery.wakeup import Wakeup
from loadbell.delivery.worker import Worker
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.queue import ClaimBatch, queue_for
from loadbell.store.tables import DELIVERY_PENDING, deliveries, events
from loadbell.testing import RecordingReceiver

BACKLOG = 2000


def test_hold_follows_the_channels_pace() -> None:
    cap = 16
    holds = Holds(cap)
    assert holds.of(1) == DEFAULT_HOLD * cap  # nothing finished yet
    for _ in range(100):
        holds.took(1, 0.002)  # a fast receiver: hold as much as allowed
        holds.took(2, 8.0)  # a slow one: what it holds must start within its lease
    assert holds.of(1) == MAX_HOLD * cap
    assert holds.of(2) == MIN_HOLD * cap


async def _backlog(settings: Settings, channel_id: int, n: int) -> None:
    """``n`` test hooks due now, with no order among them, staged in bulk."""
    engine = create_engine(settings)
    due = time.time() - 1
    try:
        async with engine.begin() as conn:
            event_ids = (
                await conn.execute(
                    sa.insert(events).returning(events.c.id, sort_by_parameter_order=True),
                    [
                        {
                            "type": "test.notification_channel",
                            "occurred_at": datetime.now(UTC),
                            "organization_id": 1,
                            "context": {},
                        }
                        for _ in range(n)
                    ],
                )
            ).scalars()
            await conn.execute(
                sa.insert(deliveries),
                [
                    {
                        "uuid": str(uuid.uuid4()),
                        "event_id": event_id,
                        "channel_id": channel_id,
                        "status": DELIVERY_PENDING,
                        "next_attempt_at": due + k * 1e-5,
                    }
                    for k, event_id in enumerate(event_ids)
                ],
            )
    finally:
        await engine.dispose()


async def test_a_backlog_is_claimed_in_large_claims(
    settings: Settings, receiver: RecordingReceiver, claims_made: list[ClaimBatch]
) -> None:
    """A fast channel's backlog goes out in claims of up to ``claim_batch`` rows, not in
    one claim per few free slots (each claim is a write transaction), and every delivery
    goes out once."""
    token = await seed(settings)
    server, serving, url = await start_server(settings, run_worker=False)
    engine = create_engine(settings)
    stop = asyncio.Event()
    running = None
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            made = await api.post("/channels", json=webhook_channel(f"{receiver.url}/h"))
            assert made.status_code == 201, made.text
        await _backlog(settings, made.json()["id"], BACKLOG)
        box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
        worker = Worker(queue_for(settings), box, settings, Wakeup())
        running = asyncio.create_task(worker.run(stop))
        await receiver.wait_for(BACKLOG, timeout=60)
    finally:
        stop.set()
        if running is not None:
            await running
        await engine.dispose()
        server.should_exit = True
        await serving
    claim_sizes = [len(b.deliveries) for b in claims_made]
    assert sum(claim_sizes) == BACKLOG
    ids = [r.headers["X-LoadImpact-ID"] for r in receiver.requests]
    assert len(set(ids)) == len(ids) == BACKLOG
    # The first claim holds DEFAULT_HOLD x per_channel_concurrency; once the channel's
    # pace is known, claims take up to claim_batch rows (about a third of that count
    # before holds followed the pace: one small claim after every full one).
    assert len(claim_sizes) <= 2 + BACKLOG // (settings.claim_batch // 2), claim_sizes
    assert max(claim_sizes) == settings.claim_batch
