"""Claiming due deliveries as leases, and recording their attempts in batches.

A claim is a lease: ``lease_until`` in the future hides a row from other workers. A worker
that dies simply lets its leases expire, and the rows become claimable again with the same
delivery id. On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so concurrent workers
never take the same row; on SQLite ``BEGIN IMMEDIATE`` serialises claims.

Each claim writes a new ``lease_until``, and results are written only where it is unchanged
(a fencing token). A worker that stalled past its lease, while another worker took the row
over, therefore only adds its attempt to the log: it cannot free the new owner's lease nor
overwrite its result.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.delivery.outcome import Outcome
from loadbell.store.db import transaction
from loadbell.store.tables import (
    DELIVERY_PENDING,
    channel_overrides,
    channels,
    deliveries,
    delivery_attempts,
    events,
    is_pending,
)


@dataclass(frozen=True)
class Claimed:
    id: int
    uuid: str
    channel_id: int
    target: str | None
    order_key: str | None
    attempts: int  # made so far in this series
    series: int
    event_id: int
    event_type: str
    occurred_at: datetime
    project_id: int | None
    context: dict[str, Any]
    lease_until: float  # epoch seconds; also the fencing token of this claim


@dataclass(frozen=True)
class ClaimBatch:
    deliveries: list[Claimed]
    channels: dict[int, sa.Row[Any]]
    overrides: dict[tuple[int, int], sa.Row[Any]]
    # The claim took its whole limit: more may be due right now.
    full: bool = False
    # Due deliveries were left because their channel had no room: claim again once it has.
    left: bool = False
    # What the worker derives once per (channel id, project id) of this claim.
    setups: dict[tuple[int, int | None], Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    delivery_id: int
    series: int
    attempt_number: int
    started_at: datetime
    outcome: Outcome
    status: str  # the delivery's new status
    next_attempt_at: float
    lease_until: float  # of the claim that made the attempt
    channel_id: int = 0
    order_key: str | None = None


# Statements are built once, with bind parameters: building a statement and its cache key
# anew for every claim cost more CPU than SQLite spends running it.
_d = deliveries.alias("d")
_p = deliveries.alias("p")
_NOW = sa.bindparam("b_now", type_=sa.Float)
_IDS: sa.BindParameter[Any] = sa.bindparam("b_ids", expanding=True)


@functools.cache
def _due(exclude: bool, with_channel: bool, for_update: bool) -> sa.Select[Any]:
    """Due deliveries that may go out now, oldest first. Parameters: ``b_now`` (epoch
    seconds), ``b_limit`` and, with ``exclude``, ``b_exclude`` (channel ids to skip)."""
    d, p = _d, _p
    earlier_pending = (
        sa.select(sa.literal(1))
        .where(p.c.order_key == d.c.order_key)
        .where(is_pending(p))
        .where(p.c.id < d.c.id)
    )
    q = (
        sa.select(d.c.id)
        .where(is_pending(d))
        .where(d.c.next_attempt_at <= _NOW)
        .where(sa.or_(d.c.lease_until.is_(None), d.c.lease_until < _NOW))
        # Per channel x run x target, only the oldest pending delivery may go out.
        .where(sa.or_(d.c.order_key.is_(None), ~sa.exists(earlier_pending)))
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(sa.bindparam("b_limit", type_=sa.Integer))
    )
    if exclude:
        q = q.where(d.c.channel_id.not_in(sa.bindparam("b_exclude", expanding=True)))
    if with_channel:
        q = q.add_columns(d.c.channel_id)
    if for_update:
        q = q.with_for_update(skip_locked=True)
    return q


@functools.cache
def _lease(for_update: bool) -> sa.Update:
    """Lease the chosen rows (``b_ids``) that are still claimable; returns their ids.

    The candidates were read without locks, so each row is checked again here. On
    PostgreSQL a row another worker is claiming right now is skipped, not waited for, and
    only the chosen rows are locked, not every candidate read."""
    still_free = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.id.in_(_IDS))
        .where(is_pending(deliveries))
        .where(sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < _NOW))
    )
    if for_update:
        still_free = still_free.with_for_update(skip_locked=True)
    return (
        sa.update(deliveries)
        .where(deliveries.c.id.in_(still_free.scalar_subquery()))
        .values(lease_until=sa.bindparam("b_lease"), lease_owner=sa.bindparam("b_owner"))
        .returning(deliveries.c.id)
    )


_claimed = (
    sa.select(
        deliveries.c.id,
        deliveries.c.uuid,
        deliveries.c.channel_id,
        deliveries.c.target,
        deliveries.c.order_key,
        deliveries.c.attempts,
        deliveries.c.series,
        events.c.id.label("event_id"),
        events.c.type.label("event_type"),
        events.c.occurred_at,
        events.c.project_id,
        events.c.context,
        deliveries.c.lease_until,
    )
    .join(events, events.c.id == deliveries.c.event_id)
    .where(deliveries.c.id.in_(_IDS))
    .order_by(deliveries.c.id)
)


async def claim(
    engine: AsyncEngine,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    exclude_channels: Collection[int] = (),
    channel_cap: int | None = None,
    channel_room: Mapping[int, int] | None = None,
) -> ClaimBatch:
    """Lease up to ``limit`` due deliveries and load what rendering them needs, in one
    transaction.

    With ``channel_cap``, at most ``channel_room[channel]`` (default ``channel_cap``) rows
    of each channel are leased, so a worker never claims more of one busy channel than it
    can start: rows it would have to hand straight back are left alone.
    """
    async with transaction(engine) as conn:
        # Read once the transaction holds SQLite's write lock: a claim that queued for it
        # still leases for the full ``lease_seconds``.
        now = time.time()
        postgres = engine.dialect.name == "postgresql"
        due = _due(
            exclude=bool(exclude_channels),
            with_channel=channel_cap is not None,
            # Choosing per channel reads more rows than it leases: lock only the chosen.
            for_update=postgres and channel_cap is None,
        )
        params: dict[str, Any] = {"b_now": now, "b_limit": limit}
        if exclude_channels:
            params["b_exclude"] = list(exclude_channels)
        full = left = False
        if channel_cap is None:
            ids = [
                r[0]
                for r in await conn.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id.in_(due.scalar_subquery()))
                    .values(lease_until=now + lease_seconds, lease_owner=owner)
                    .returning(deliveries.c.id),
                    params,
                )
            ]
            full = len(ids) >= limit
        else:
            room = channel_room or {}
            taken: Counter[int] = Counter()
            chosen = []
            candidates = (await conn.execute(due, params)).all()
            for delivery_id, channel_id in candidates:
                if taken[channel_id] < room.get(channel_id, channel_cap):
                    taken[channel_id] += 1
                    chosen.append(delivery_id)
            left = len(chosen) < len(candidates)
            full = len(candidates) >= limit and not left
            ids = []
            if chosen:
                leased = await conn.execute(
                    _lease(postgres),
                    {
                        "b_ids": chosen,
                        "b_now": now,
                        "b_lease": now + lease_seconds,
                        "b_owner": owner,
                    },
                )
                ids = [r[0] for r in leased]
        if not ids:
            return ClaimBatch([], {}, {}, full, left)
        rows = await conn.execute(_claimed, {"b_ids": ids})
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
        return ClaimBatch(claimed, channel_rows, overrides, full, left)


_channels = sa.select(channels).where(channels.c.id.in_(_IDS))
_overrides = sa.select(channel_overrides).where(channel_overrides.c.channel_id.in_(_IDS))


async def load_channel_rows(
    conn: AsyncConnection, channel_ids: Collection[int]
) -> dict[int, sa.Row[Any]]:
    rows = await conn.execute(_channels, {"b_ids": list(channel_ids)})
    return {r.id: r for r in rows}


async def load_override_rows(
    conn: AsyncConnection, pairs: Collection[tuple[int, int]]
) -> dict[tuple[int, int], sa.Row[Any]]:
    if not pairs:
        return {}
    rows = await conn.execute(_overrides, {"b_ids": sorted({c for c, _ in pairs})})
    return {(r.channel_id, r.project_id): r for r in rows if (r.channel_id, r.project_id) in pairs}


_complete = (
    sa.update(deliveries)
    .where(deliveries.c.id == sa.bindparam("b_id"))
    .where(deliveries.c.series == sa.bindparam("b_series"))
    .where(deliveries.c.lease_until == sa.bindparam("b_lease"))
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


_INSERT_ATTEMPTS = sa.insert(delivery_attempts)
_FOLLOWER = (
    sa.select(deliveries.c.id)
    .where(deliveries.c.order_key.in_(sa.bindparam("b_keys", expanding=True)))
    .where(is_pending(deliveries))
    .limit(1)
)


async def complete(engine: AsyncEngine, done: Sequence[Completion], worker: str) -> bool:
    """Write a batch of attempt results and their deliveries' new state in one transaction.

    A delivery redelivered meanwhile (its series moved on) or claimed again after its lease
    ran out keeps its new state: the ``series`` and ``lease_until`` guards make the late
    result touch only the attempt log.

    Returns whether a delivery that waited behind one of these (same order key) is pending:
    it may go out now.
    """
    if not done:
        return False
    now = datetime.now(UTC)
    async with transaction(engine) as conn:
        await conn.execute(
            _complete,
            [
                {
                    "b_id": c.delivery_id,
                    "b_series": c.series,
                    "b_lease": c.lease_until,
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
            _INSERT_ATTEMPTS,
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
        ended = sorted({c.order_key for c in done if c.order_key and c.status != DELIVERY_PENDING})
        if not ended:
            return False
        return (await conn.execute(_FOLLOWER, {"b_keys": ended})).first() is not None


_DEFER = (
    sa.update(deliveries)
    .where(deliveries.c.id == sa.bindparam("b_id"))
    .where(deliveries.c.series == sa.bindparam("b_series"))
    .where(deliveries.c.lease_until == sa.bindparam("b_lease"))
    .values(next_attempt_at=sa.bindparam("b_next"), lease_until=None, lease_owner=None)
)


async def defer(engine: AsyncEngine, items: Sequence[tuple[int, int, float, float]]) -> None:
    """Release paced deliveries until ``due`` without counting an attempt.

    Items are (delivery id, series, lease_until of the claim, due).
    """
    if not items:
        return
    async with transaction(engine) as conn:
        await conn.execute(
            _DEFER,
            [
                {"b_id": i, "b_series": s, "b_lease": lease, "b_next": due}
                for i, s, lease, due in items
            ],
        )
