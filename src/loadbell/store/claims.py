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

import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.store.db import transaction
from loadbell.store.driver_sql import Statements, dialect_of
from loadbell.store.tables import DELIVERY_PENDING
from loadbell.values import Outcome


# Claimed and Completion are named tuples: one of each per delivery, built far faster than
# frozen dataclasses.
class Claimed(NamedTuple):
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
    channels: dict[int, dict[str, Any]]  # as channel_from_row reads them
    overrides: dict[tuple[int, int], dict[str, Any]]  # as override_from_row reads them
    # The claim took its whole limit: more may be due right now.
    full: bool = False
    # Due deliveries were left because their channel had no room: claim again once it has.
    left: bool = False
    # What the worker derives once per (channel id, project id) of this claim.
    setups: dict[tuple[int, int | None], Any] = field(default_factory=dict)


class Completion(NamedTuple):
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


# The hot statements are SQL text run through the driver (driver_sql.py): compiled Core
# execution cost several times what the database spends on them.
_DUE = """
SELECT d.id, d.uuid, d.channel_id, d.target, d.order_key, d.attempts, d.series, d.event_id,
    e.type, e.occurred_at, e.project_id, e.context
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.next_attempt_at <= ?
  AND (d.lease_until IS NULL OR d.lease_until < ?)
  AND (d.order_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.order_key = d.order_key AND p.status = 'pending' AND p.id < d.id))
  {exclude}
ORDER BY d.next_attempt_at, d.id
LIMIT ?
"""
# Due deliveries that may go out now, oldest first, with their events; per channel x run x
# target (order key) only the oldest pending one. ``status = 'pending'`` is written out:
# the due and order indexes are partial on it (tables.is_pending). Parameters: now, now[,
# channel ids to skip], limit.
_DUE_ALL = _DUE.replace("{exclude}", "")
_DUE_EXCLUDING = _DUE.replace("{exclude}", "AND NOT (d.channel_id {in_ints})")

# Lease the chosen rows. On PostgreSQL the candidates were read without locks, so each row
# is checked again: a row another worker is claiming right now is skipped, not waited for,
# and only the chosen rows are locked; the statement returns those it leased. On SQLite the
# claim's write transaction began before the candidates were read (BEGIN IMMEDIATE), so
# nothing else can have changed them. Parameters: lease until, owner, ids, now (PostgreSQL).
_LEASE = {
    "postgresql": """
UPDATE deliveries SET lease_until = ?, lease_owner = ?
WHERE id IN (
    SELECT id FROM deliveries
    WHERE id {in_ints} AND status = 'pending' AND (lease_until IS NULL OR lease_until < ?)
    FOR UPDATE SKIP LOCKED)
RETURNING id
""",
    "sqlite": "UPDATE deliveries SET lease_until = ?, lease_owner = ? WHERE id {in_ints}",
}


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
        run = await Statements.on(conn)
        dialect = run.dialect
        # Read once the transaction holds SQLite's write lock: a claim that queued for it
        # still leases for the full ``lease_seconds``.
        now = time.time()
        if exclude_channels:
            excluded = dialect.members(list(exclude_channels))
            candidates = await run.fetch(_DUE_EXCLUDING, (now, now, excluded, limit))
        else:
            candidates = await run.fetch(_DUE_ALL, (now, now, limit))
        room = channel_room or {}
        cap = limit if channel_cap is None else channel_cap
        taken: Counter[int] = Counter()
        chosen = []
        for row in candidates:
            if taken[row[2]] < room.get(row[2], cap):
                taken[row[2]] += 1
                chosen.append(row)
        left = len(chosen) < len(candidates)
        full = len(candidates) >= limit and not left
        if not chosen:
            return ClaimBatch([], {}, {}, full, left)
        lease_until = now + lease_seconds
        ids = dialect.members([r[0] for r in chosen])
        if dialect.postgres:
            leased = await run.fetch(_LEASE["postgresql"], (lease_until, owner, ids, now))
            still_free = {r[0] for r in leased}
            chosen = [r for r in chosen if r[0] in still_free]
        else:
            await run.execute(_LEASE["sqlite"], (lease_until, owner, ids))
        read_timestamp, read_json = dialect.read_timestamp, dialect.read_json
        claimed = [
            Claimed(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                read_timestamp(r[9]),
                r[10],
                read_json(r[11]),
                lease_until,
            )
            for r in chosen
        ]
        if not claimed:
            return ClaimBatch([], {}, {}, full, left)
        channel_rows = await _load_channels(run, {c.channel_id for c in claimed})
        pairs = {
            (c.channel_id, c.project_id)
            for c in claimed
            if c.project_id is not None
            and c.channel_id in channel_rows
            and channel_rows[c.channel_id]["project_id"] is None
        }
        overrides = await _load_overrides(run, pairs)
        return ClaimBatch(claimed, channel_rows, overrides, full, left)


_CHANNELS = """
SELECT id, organization_id, project_id, kind, name, enabled, config, secrets, events, filters,
    retry, deleted_at
FROM channels WHERE id {in_ints}
"""
_OVERRIDES = """
SELECT channel_id, project_id, enabled, config, secrets
FROM channel_overrides WHERE channel_id {in_ints}
"""


async def _load_channels(run: Statements, ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The claimed deliveries' channels, as :func:`store.channels.channel_from_row` reads
    them."""
    json = run.dialect.read_json
    return {
        r[0]: {
            "id": r[0],
            "organization_id": r[1],
            "project_id": r[2],
            "kind": r[3],
            "name": r[4],
            "enabled": bool(r[5]),
            "config": json(r[6]),
            "secrets": r[7],
            "events": json(r[8]),
            "filters": json(r[9]),
            "retry": json(r[10]),
            "deleted_at": r[11],
        }
        for r in await run.fetch(_CHANNELS, (run.dialect.members(sorted(ids)),))
    }


async def _load_overrides(
    run: Statements, pairs: Collection[tuple[int, int]]
) -> dict[tuple[int, int], dict[str, Any]]:
    if not pairs:
        return {}
    channel_ids = sorted({c for c, _ in pairs})
    return {
        (r[0], r[1]): {
            "enabled": None if r[2] is None else bool(r[2]),
            "config": run.dialect.read_json(r[3]),
            "secrets": r[4],
        }
        for r in await run.fetch(_OVERRIDES, (run.dialect.members(channel_ids),))
        if (r[0], r[1]) in pairs
    }


# Parameters: status, attempts, next attempt at, error, status code, updated at; then the
# guards: id, series, lease until.
_COMPLETE = """
UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, lease_until = NULL,
    lease_owner = NULL, last_error = ?, last_status_code = ?, updated_at = ?
WHERE id = ? AND series = ? AND lease_until = ?
"""
_INSERT_ATTEMPT = """
INSERT INTO delivery_attempts (delivery_id, series, number, started_at, duration_ms, outcome,
    request_url, request_headers, response_status, response_body, error, worker)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_FOLLOWER = "SELECT 1 FROM deliveries WHERE order_key {in_texts} AND status = 'pending' LIMIT 1"


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
    dialect = dialect_of(engine.dialect.name)
    now = dialect.timestamp(datetime.now(UTC))
    updates = []
    attempts = []
    for c in done:
        o = c.outcome
        updates.append(
            (
                c.status,
                c.attempt_number,
                c.next_attempt_at,
                o.error,
                o.status_code,
                now,
                c.delivery_id,
                c.series,
                c.lease_until,
            )
        )
        attempts.append(
            (
                c.delivery_id,
                c.series,
                c.attempt_number,
                dialect.timestamp(c.started_at),
                round(o.duration_ms, 3),
                o.verdict.value,
                o.request_url,
                dialect.json(o.request_headers),
                o.status_code,
                o.body_excerpt,
                o.error,
                worker,
            )
        )
    async with transaction(engine) as conn:
        run = await Statements.on(conn)
        await run.run_many(_COMPLETE, updates)
        await run.run_many(_INSERT_ATTEMPT, attempts)
        ended = sorted({c.order_key for c in done if c.order_key and c.status != DELIVERY_PENDING})
        if not ended:
            return False
        return bool(await run.fetch(_FOLLOWER, (dialect.members(ended),)))


_DEFER = """
UPDATE deliveries SET next_attempt_at = ?, lease_until = NULL, lease_owner = NULL
WHERE id = ? AND series = ? AND lease_until = ?
"""


async def defer(engine: AsyncEngine, items: Sequence[tuple[int, int, float, float]]) -> None:
    """Release paced deliveries until ``due`` without counting an attempt.

    Items are (delivery id, series, lease_until of the claim, due).
    """
    if not items:
        return
    async with transaction(engine) as conn:
        run = await Statements.on(conn)
        await run.run_many(_DEFER, [(due, i, s, lease) for i, s, lease, due in items])
