"""Claiming due deliveries as leases, and recording their attempts in batches.

A claim is a lease: ``lease_until`` in the future hides a row from other workers. A worker
that dies simply lets its leases expire, and the rows become claimable again with the same
delivery id. On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so concurrent workers
never take the same row; on SQLite ``BEGIN IMMEDIATE`` serialises claims.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.delivery.outcome import Outcome
from loadbell.store.tables import (
    DELIVERY_PENDING,
    channel_overrides,
    channels,
    deliveries,
    delivery_attempts,
    events,
)


@dataclass(frozen=True)
class Claimed:
    id: int
    uuid: str
    channel_id: int
    target: str | None
    attempts: int  # made so far in this series
    series: int
    event_id: int
    event_type: str
    occurred_at: datetime
    project_id: int | None
    context: dict[str, Any]


@dataclass(frozen=True)
class ClaimBatch:
    deliveries: list[Claimed]
    channels: dict[int, sa.Row[Any]]
    overrides: dict[tuple[int, int], sa.Row[Any]]


@dataclass(frozen=True)
class Completion:
    delivery_id: int
    series: int
    attempt_number: int
    started_at: datetime
    outcome: Outcome
    status: str  # the delivery's new status
    next_attempt_at: float


def _due_ids(now: float, limit: int, exclude_channels: Collection[int]) -> sa.Select[Any]:
    d = deliveries.alias("d")
    p = deliveries.alias("p")
    earlier_pending = (
        sa.select(sa.literal(1))
        .where(p.c.order_key == d.c.order_key)
        .where(p.c.status == DELIVERY_PENDING)
        .where(p.c.id < d.c.id)
    )
    q = (
        sa.select(d.c.id)
        .where(d.c.status == DELIVERY_PENDING)
        .where(d.c.next_attempt_at <= now)
        .where(sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now))
        # Per channel x run x target, only the oldest pending delivery may go out.
        .where(sa.or_(d.c.order_key.is_(None), ~sa.exists(earlier_pending)))
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    )
    if exclude_channels:
        q = q.where(d.c.channel_id.not_in(list(exclude_channels)))
    return q


async def claim(
    engine: AsyncEngine,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    exclude_channels: Collection[int] = (),
) -> ClaimBatch:
    """Lease up to ``limit`` due deliveries and load what rendering them needs, in one
    transaction."""
    now = time.time()
    due = _due_ids(now, limit, exclude_channels)
    if engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    async with engine.begin() as conn:
        ids = [
            r[0]
            for r in await conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id.in_(due.scalar_subquery()))
                .values(lease_until=now + lease_seconds, lease_owner=owner)
                .returning(deliveries.c.id)
            )
        ]
        if not ids:
            return ClaimBatch([], {}, {})
        rows = await conn.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.uuid,
                deliveries.c.channel_id,
                deliveries.c.target,
                deliveries.c.attempts,
                deliveries.c.series,
                events.c.id.label("event_id"),
                events.c.type.label("event_type"),
                events.c.occurred_at,
                events.c.project_id,
                events.c.context,
            )
            .join(events, events.c.id == deliveries.c.event_id)
            .where(deliveries.c.id.in_(ids))
            .order_by(deliveries.c.id)
        )
        claimed = [Claimed(**r._mapping) for r in rows]
        channel_rows = await load_channel_rows(conn, {c.channel_id for c in claimed})
        pairs = {
            (c.channel_id, c.project_id)
            for c in claimed
            if c.project_id is not None
            and c.channel_id in channel_rows
            and channel_rows[c.channel_id].project_id is None
        }
        overrides = await load_override_rows(conn, pairs)
        return ClaimBatch(claimed, channel_rows, overrides)


async def load_channel_rows(
    conn: AsyncConnection, channel_ids: Collection[int]
) -> dict[int, sa.Row[Any]]:
    rows = await conn.execute(sa.select(channels).where(channels.c.id.in_(list(channel_ids))))
    return {r.id: r for r in rows}


async def load_override_rows(
    conn: AsyncConnection, pairs: Collection[tuple[int, int]]
) -> dict[tuple[int, int], sa.Row[Any]]:
    if not pairs:
        return {}
    rows = await conn.execute(
        sa.select(channel_overrides).where(
            channel_overrides.c.channel_id.in_({c for c, _ in pairs})
        )
    )
    return {(r.channel_id, r.project_id): r for r in rows if (r.channel_id, r.project_id) in pairs}


_complete = (
    sa.update(deliveries)
    .where(deliveries.c.id == sa.bindparam("b_id"))
    .where(deliveries.c.series == sa.bindparam("b_series"))
    .values(
        status=sa.bindparam("b_status"),
        attempts=sa.bindparam("b_attempts"),
        next_attempt_at=sa.bindparam("b_next"),
        lease_until=None,
        lease_owner=None,
        last_error=sa.bindparam("b_error"),
        last_status_code=sa.bindparam("b_code"),
        updated_at=sa.bindparam("b_now"),
    )
)


async def complete(engine: AsyncEngine, done: Sequence[Completion], worker: str) -> None:
    """Write a batch of attempt results and their deliveries' new state in one transaction.

    A delivery redelivered meanwhile (its series moved on) keeps its new state: the
    ``series`` guard makes the late result touch only the attempt log.
    """
    if not done:
        return
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            _complete,
            [
                {
                    "b_id": c.delivery_id,
                    "b_series": c.series,
                    "b_status": c.status,
                    "b_attempts": c.attempt_number,
                    "b_next": c.next_attempt_at,
                    "b_error": c.outcome.error,
                    "b_code": c.outcome.status_code,
                    "b_now": now,
                }
                for c in done
            ],
        )
        await conn.execute(
            sa.insert(delivery_attempts),
            [
                {
                    "delivery_id": c.delivery_id,
                    "series": c.series,
                    "number": c.attempt_number,
                    "started_at": c.started_at,
                    "duration_ms": round(c.outcome.duration_ms, 3),
                    "outcome": c.outcome.verdict.value,
                    "request_url": c.outcome.request_url,
                    "request_headers": c.outcome.request_headers,
                    "response_status": c.outcome.status_code,
                    "response_body": c.outcome.body_excerpt,
                    "error": c.outcome.error,
                    "worker": worker,
                }
                for c in done
            ],
        )


async def defer(engine: AsyncEngine, items: Sequence[tuple[int, int, float]]) -> None:
    """Release paced deliveries until ``due`` without counting an attempt."""
    if not items:
        return
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == sa.bindparam("b_id"))
            .where(deliveries.c.series == sa.bindparam("b_series"))
            .values(next_attempt_at=sa.bindparam("b_next"), lease_until=None, lease_owner=None),
            [{"b_id": i, "b_series": s, "b_next": due} for i, s, due in items],
        )


async def next_due(engine: AsyncEngine) -> float | None:
    """When the earliest claimable delivery becomes due (epoch seconds), or None.

    Only the head of each ordered sequence counts, and a leased row counts from when its
    lease runs out, so a worker never spins on rows it could not claim anyway.
    """
    d = deliveries.alias("d")
    p = deliveries.alias("p")
    earlier_pending = (
        sa.select(sa.literal(1))
        .where(p.c.order_key == d.c.order_key)
        .where(p.c.status == DELIVERY_PENDING)
        .where(p.c.id < d.c.id)
    )
    ready_at = sa.case(
        (d.c.lease_until > d.c.next_attempt_at, d.c.lease_until), else_=d.c.next_attempt_at
    )
    q = (
        sa.select(sa.func.min(ready_at))
        .where(d.c.status == DELIVERY_PENDING)
        .where(sa.or_(d.c.order_key.is_(None), ~sa.exists(earlier_pending)))
    )
    async with engine.connect() as conn:
        value = (await conn.execute(q)).scalar()
        await conn.rollback()
    return float(value) if value is not None else None
