"""The delivery queue on PostgreSQL: named queries on an asyncpg pool of the worker's own.

Concurrent workers take disjoint rows without waiting for each other: a claim selects its
candidates with ``FOR UPDATE OF d SKIP LOCKED``, so rows another worker is claiming right
now are passed over and the next due ones taken instead, and every row it returns is
locked and checked again against the newest committed version. It then leases the rows it
keeps by id. Before, the candidates were read without locks and only the lease skipped
locked rows: two workers woken by the same NOTIFY read the same oldest rows, one leased
them all, the other came back empty and slept until its next poll (splits like
19,002/998 on two workers, one of four idle).

Results are written set-based: one ``INSERT ... SELECT FROM unnest(...)`` for the attempt
rows and one ``UPDATE ... FROM unnest(...)`` for the deliveries, not a statement per row.
PostgreSQL runs on the same cores as the worker here, and its per-statement work was most
of a result write's cost.

asyncpg prepares each statement once per connection. List parameters are arrays
(``= ANY($n::integer[])``, ``unnest($n::text[])``), so each statement is prepared once
whatever the list's length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from loadbell.domain.health import REASON_DISABLED, disabled_reason
from loadbell.store.db import json_dumps
from loadbell.store.outbox import NOTIFY_CHANNEL
from loadbell.store.queue import (
    CHANNEL_COLUMNS,
    CLAIMED_COLUMNS,
    KEEP_HOURS,
    OVERRIDE_COLUMNS,
    ClaimBatch,
    Claimed,
    Completion,
    Deferral,
    QueueUnavailable,
    Recorded,
    choose,
    health_rows,
    hour_rows,
    override_pairs,
    result_rows,
    select_list,
    to_check,
)

_CLAIMED = select_list(CLAIMED_COLUMNS, Claimed._fields)


def _due(dead: bool, exclude: bool) -> str:
    """Due deliveries that may go out now, oldest first, with their events; per channel x
    run x target only the oldest pending one. Locks the rows it returns and skips those
    another transaction has locked. Parameters: now, limit[, dead owners][, channel ids
    to skip]."""
    extra = 3
    dead_sql = exclude_sql = ""
    if dead:
        dead_sql, extra = f"OR d.lease_owner = ANY(${extra}::text[])", extra + 1
    if exclude:
        exclude_sql = f"AND NOT (d.channel_id = ANY(${extra}::integer[]))"
    # The last column is not part of Claimed: whether the row was leased before (a claim
    # over an expired lease, or over a lapsed worker's), read under the row lock.
    return f"""
SELECT {_CLAIMED}, d.lease_until IS NOT NULL AS taken_over
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.next_attempt_at <= $1
  AND (d.lease_until IS NULL OR d.lease_until < $1 {dead_sql})
  AND (d.order_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.order_key = d.order_key AND p.status = 'pending' AND p.id < d.id))
  {exclude_sql}
ORDER BY d.next_attempt_at, d.id
LIMIT $2
FOR UPDATE OF d SKIP LOCKED
"""


# The chosen rows are locked by this claim's own SELECT: lease them by id.
# Parameters: lease until, owner, ids.
LEASE = "UPDATE deliveries SET lease_until = $1, lease_owner = $2 WHERE id = ANY($3::integer[])"
# Sent (at commit) by a claim that locked due rows it did not keep, and by a result write
# after which a waiting delivery of an ordered sequence may go: other workers may have
# found those rows locked, or not due, and would otherwise wait for their next poll.
SHARE = f"NOTIFY {NOTIFY_CHANNEL}"

DUE = {(dead, exclude): _due(dead, exclude) for dead in (False, True) for exclude in (False, True)}
CHANNELS = f"SELECT {', '.join(CHANNEL_COLUMNS)} FROM channels WHERE id = ANY($1::integer[])"
OVERRIDES = (
    f"SELECT {', '.join(OVERRIDE_COLUMNS)} FROM channel_overrides "
    "WHERE channel_id = ANY($1::integer[])"
)
# One array per column: status, attempts, next attempt at, error, status code; the guards
# id, series, lease until; then updated at. ``d.id = ANY($6)`` keeps the plan on the
# primary key (a hash join over the whole table looked cheaper to the planner on a small
# table, and cost 10 ms at 20,000 rows).
#
# The same statement answers whether a delivery this write ended (a row it updated, so
# under its claim's lease) had a follower: a pending delivery of the same order key, which
# may go now. The updated rows are not visible to the outer query, so a follower is a
# pending row with a greater id than the ended one (order is by id). A separate query
# after the update was one more round trip and statement per batch.
_DONE = """done AS (
    UPDATE deliveries AS d SET status = u.status, attempts = u.attempts,
        next_attempt_at = u.next_attempt_at, lease_until = NULL, lease_owner = NULL,
        last_error = u.last_error, last_status_code = u.last_status_code, updated_at = $9
    FROM unnest($1::text[], $2::integer[], $3::float8[], $4::text[], $5::integer[],
                $6::integer[], $7::integer[], $8::float8[])
        AS u(status, attempts, next_attempt_at, last_error, last_status_code,
             id, series, lease_until)
    WHERE d.id = ANY($6::integer[])
      AND d.id = u.id AND d.series = u.series AND d.lease_until = u.lease_until
    RETURNING d.id, d.order_key, d.status
)"""
_FOLLOWS = """
SELECT EXISTS (
    SELECT 1 FROM done JOIN deliveries p ON p.order_key = done.order_key
    WHERE done.status <> 'pending' AND p.status = 'pending' AND p.id > done.id)
"""
COMPLETE = f"WITH {_DONE}{_FOLLOWS}"
# The attempt rows of a batch, one array per column (headers as JSON text), then the worker.
# A row that exists already (the batch is written again, or another worker made the same
# attempt) is left to INSERT_ATTEMPT below, row by row: returned rows are the new ones.
INSERT_ATTEMPTS = """
INSERT INTO delivery_attempts (delivery_id, series, number, started_at, duration_ms, outcome,
    request_url, request_headers, response_status, response_body, error, request_body,
    request_body_bytes, response_headers, worker)
SELECT u.delivery_id, u.series, u.number, u.started_at, u.duration_ms, u.outcome,
    u.request_url, u.request_headers::json, u.response_status, u.response_body, u.error,
    u.request_body, u.request_body_bytes, u.response_headers::json, $15
FROM unnest($1::integer[], $2::integer[], $3::integer[], $4::timestamptz[], $5::float8[],
            $6::text[], $7::text[], $8::text[], $9::integer[], $10::text[], $11::text[],
            $12::text[], $13::integer[], $14::text[])
    AS u(delivery_id, series, number, started_at, duration_ms, outcome, request_url,
         request_headers, response_status, response_body, error, request_body,
         request_body_bytes, response_headers)
ON CONFLICT (delivery_id, series, number) DO NOTHING
RETURNING delivery_id, series, number
"""
# One attempt is one row (uq_delivery_attempts_number), however often a batch is written.
# When two workers made the same attempt (one after losing its lease), the row is the one
# whose claim still holds: its result is the delivery's. Written before the delivery's
# update, which clears the lease. Parameters: the row, then the claim's lease until.
INSERT_ATTEMPT = """
INSERT INTO delivery_attempts (delivery_id, series, number, started_at, duration_ms, outcome,
    request_url, request_headers, response_status, response_body, error, request_body,
    request_body_bytes, response_headers, worker)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (delivery_id, series, number) DO UPDATE SET
    started_at = EXCLUDED.started_at, duration_ms = EXCLUDED.duration_ms,
    outcome = EXCLUDED.outcome, request_url = EXCLUDED.request_url,
    request_headers = EXCLUDED.request_headers,
    response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
    error = EXCLUDED.error, request_body = EXCLUDED.request_body,
    request_body_bytes = EXCLUDED.request_body_bytes,
    response_headers = EXCLUDED.response_headers, worker = EXCLUDED.worker
WHERE EXISTS (
    SELECT 1 FROM deliveries d
    WHERE d.id = EXCLUDED.delivery_id AND d.series = EXCLUDED.series AND d.lease_until = $16)
"""
# due; id, series, lease until
DEFER = """
UPDATE deliveries SET next_attempt_at = $1, lease_until = NULL, lease_owner = NULL
WHERE id = $2 AND series = $3 AND lease_until = $4
"""
# After a write that disabled a channel (its pending deliveries were skipped with it):
# whether a delivery of the ended ones' order keys is still pending.
FOLLOWER = """
SELECT 1 FROM deliveries WHERE order_key = ANY($1::text[]) AND status = 'pending' LIMIT 1
"""
# One row per channel (target '') and target a batch of results ended deliveries of; a
# success in the batch (last_success_at set) resets the count. Parameters: HealthRow.
HEALTH = """
INSERT INTO channel_health (channel_id, target, consecutive_failures, first_failure_at,
    last_success_at, last_failure_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (channel_id, target) DO UPDATE SET
    consecutive_failures = CASE WHEN EXCLUDED.last_success_at IS NOT NULL
        THEN EXCLUDED.consecutive_failures
        ELSE channel_health.consecutive_failures + EXCLUDED.consecutive_failures END,
    first_failure_at = CASE WHEN EXCLUDED.last_success_at IS NOT NULL
        THEN EXCLUDED.first_failure_at
        ELSE coalesce(channel_health.first_failure_at, EXCLUDED.first_failure_at) END,
    last_success_at = coalesce(EXCLUDED.last_success_at, channel_health.last_success_at),
    last_failure_at = coalesce(EXCLUDED.last_failure_at, channel_health.last_failure_at)
"""
HOURS = """
INSERT INTO channel_health_hours (channel_id, hour, succeeded, failed) VALUES ($1, $2, $3, $4)
ON CONFLICT (channel_id, hour) DO UPDATE SET
    succeeded = channel_health_hours.succeeded + EXCLUDED.succeeded,
    failed = channel_health_hours.failed + EXCLUDED.failed
"""
# COMPLETE with the batch's health and hourly counts (HEALTH and HOURS, their rows as
# arrays from $10 on) in the same statement: two round trips fewer per result write, which
# at a few deliveries per batch (an API-paced load) is a third of the write's. Each key
# comes once per batch, sorted, so no row is upserted twice and concurrent writers lock
# the rows in one order (health_rows). The data-modifying WITHs run whatever the outer
# query reads; HEALTH_OF, a later statement, sees what they wrote.
_HEALTH_ROWS = """SELECT * FROM unnest($10::integer[], $11::text[], $12::integer[],
    $13::float8[], $14::float8[], $15::float8[])"""
_HOURS_ROWS = "SELECT * FROM unnest($16::integer[], $17::integer[], $18::integer[], $19::integer[])"
COMPLETE_WITH_HEALTH = (
    f"WITH health AS ({HEALTH.replace('VALUES ($1, $2, $3, $4, $5, $6)', _HEALTH_ROWS)}), "
    f"hours AS ({HOURS.replace('VALUES ($1, $2, $3, $4)', _HOURS_ROWS)}), {_DONE}{_FOLLOWS}"
)
FORGET_HOURS = "DELETE FROM channel_health_hours WHERE hour < $1"
# The counts of every channel a batch's failures may disable, in one round trip.
HEALTH_OF = """
SELECT channel_id, consecutive_failures, first_failure_at FROM channel_health
WHERE channel_id = ANY($1::int[]) AND target = ''
"""
DISABLE = """
UPDATE channels SET enabled = false, disabled_at = $2, disabled_reason = $3
WHERE id = $1 AND disabled_at IS NULL AND deleted_at IS NULL
RETURNING id
"""
# A disabled channel's pending deliveries end skipped (leased ones too: a result of an
# attempt under way is then fenced out and only logged), and so do its held ones.
SKIP_PENDING = """
UPDATE deliveries SET status = 'skipped', reason = $3, lease_until = NULL,
    lease_owner = NULL, updated_at = $2
WHERE channel_id = $1 AND status IN ('pending', 'held')
"""
# Held deliveries whose quiet hours ended (ix_deliveries_held): pending, due at once. The
# status is written out, so the partial index applies. Parameters: now, due, updated at.
RELEASE = """
UPDATE deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $3
WHERE status = 'held' AND next_attempt_at <= $1
"""
HEARTBEAT = """
INSERT INTO workers (name, started_at, alive_until) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET alive_until = EXCLUDED.alive_until
"""
FORGET = "DELETE FROM workers WHERE alive_until < $1"
LAPSED = "SELECT name FROM workers WHERE alive_until < $1"
LEAVE = "DELETE FROM workers WHERE name = $1"

# The failures that mean "the database cannot be reached or refused": asyncpg's own (its
# client-state error included, seen when a connection drops mid-statement), the socket's,
# and a connect or statement that timed out.
_UNAVAILABLE = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)
CONNECT_TIMEOUT = 5.0  # seconds to open a connection
STATEMENT_TIMEOUT = 30.0  # seconds: a statement on a server that stopped answering


def _same(value: Any) -> Any:
    """asyncpg takes datetimes and (with the json codec) dicts as they are."""
    return value


async def _codecs(conn: asyncpg.Connection) -> None:
    # SQLAlchemy's JSON columns are PostgreSQL ``json``; decode them as SQLAlchemy does.
    await conn.set_type_codec("json", encoder=json_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool: nothing, these connections
    being the queue's own. It never takes advisory locks, opens cursors, LISTENs (the
    wake-up has a connection of its own) or SETs, which asyncpg's default reset undoes
    with one more round trip and four statements on every release, so on every claim
    and every result write. A transaction left open (only if its rollback failed) is
    rolled back, as the default reset does."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresQueue:
    def __init__(self, dsn: str, *, max_connections: int = 4) -> None:
        self.dsn = dsn
        self.max_connections = max_connections  # claims, result writes and the heartbeat
        self._pool: asyncpg.Pool | None = None
        self._forgot_hour = 0  # the last hour old channel_health_hours rows were removed

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                # No floor: asyncpg would keep reconnecting (and logging each failure)
                # in the background during an outage; the worker's retries suffice.
                min_size=0,
                max_size=self.max_connections,
                timeout=CONNECT_TIMEOUT,
                command_timeout=STATEMENT_TIMEOUT,
                init=_codecs,
                reset=_reset,
            )
        except _UNAVAILABLE as exc:
            raise QueueUnavailable(f"{exc.__class__.__name__}: {exc}") from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        await self.open()
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn
        except _UNAVAILABLE as exc:
            # A restarted server leaves every pooled connection dead: replace them all
            # now rather than fail once per connection.
            await self._pool.expire_connections()
            raise QueueUnavailable(f"{exc.__class__.__name__}: {exc}") from exc

    async def claim(
        self,
        *,
        owner: str,
        limit: int,
        lease_seconds: float,
        exclude_channels: Collection[int] = (),
        channel_cap: int | None = None,
        channel_room: Mapping[int, int] | None = None,
        dead_owners: Collection[str] = (),
    ) -> ClaimBatch:
        dead = sorted(dead_owners)
        async with self._transaction() as conn:
            now = time.time()
            params: list[Any] = [now, limit]
            if dead:
                params.append(dead)
            if exclude_channels:
                params.append(sorted(exclude_channels))
            # Locked: rows left out by choose() are free again at commit.
            candidates = await conn.fetch(DUE[(bool(dead), bool(exclude_channels))], *params)
            chosen, full, left = choose(
                candidates,
                limit=limit,
                channel_of=Claimed._fields.index("channel_id"),
                channel_cap=channel_cap,
                channel_room=channel_room,
            )
            if not chosen:
                return ClaimBatch([], {}, {}, full, left)
            until = now + lease_seconds
            await conn.execute(LEASE, until, owner, [r["id"] for r in chosen])
            if left:
                await conn.execute(SHARE)
            taken_over = sum(1 for r in chosen if r["taken_over"])
            claimed = [Claimed._make((*r[:-1], until)) for r in chosen]
            channels = {
                r["id"]: dict(r)
                for r in await conn.fetch(CHANNELS, sorted({c.channel_id for c in claimed}))
            }
            pairs = override_pairs(claimed, channels)
            overrides: dict[tuple[int, int], dict[str, Any]] = {}
            if pairs:
                ids = sorted({c for c, _ in pairs})
                for r in await conn.fetch(OVERRIDES, ids):
                    key = (r["channel_id"], r["project_id"])
                    if key in pairs:
                        overrides[key] = {
                            "enabled": r["enabled"],
                            "config": r["config"],
                            "secrets": r["secrets"],
                        }
        return ClaimBatch(claimed, channels, overrides, full, left, taken_over=taken_over)

    async def record(
        self, done: Sequence[Completion], deferred: Sequence[Deferral], worker: str
    ) -> Recorded:
        if not done and not deferred:
            return Recorded()
        stamp = datetime.now(UTC)
        updates, attempts = result_rows(done, worker, now=stamp, stamp=_same, as_json=json_dumps)
        now = time.time()
        health = health_rows(done, now)
        async with self._transaction() as conn:
            followers = False
            hours = hour_rows(done, now) if health else []
            if done:
                await self._insert_attempts(conn, attempts, worker)
                columns = list(zip(*updates, strict=True))
                del columns[5]  # updated at: one value for the batch
                if health:  # the batch ended deliveries
                    rows = (*zip(*health, strict=True), *zip(*hours, strict=True))
                    arrays = [list(c) for c in rows]
                    answer = await conn.fetchval(COMPLETE_WITH_HEALTH, *columns, stamp, *arrays)
                else:
                    answer = await conn.fetchval(COMPLETE, *columns, stamp)
                followers = bool(answer)
            if deferred:
                await conn.executemany(
                    DEFER, [(d.due, d.delivery_id, d.series, d.lease_until) for d in deferred]
                )
            disabled = []
            if health:
                if hours[0][1] != self._forgot_hour:  # once an hour per worker
                    await conn.execute(FORGET_HOURS, hours[0][1] - KEEP_HOURS)
                    self._forgot_hour = hours[0][1]
                rules = to_check(done)
                counts = await conn.fetch(HEALTH_OF, list(rules)) if rules else []
                for channel_id, failures, first in counts:
                    if not rules[channel_id].reached(failures, first, now):
                        continue
                    why = disabled_reason(failures, first)
                    if await conn.fetchval(DISABLE, channel_id, stamp, why) is not None:
                        await conn.execute(SKIP_PENDING, channel_id, stamp, REASON_DISABLED)
                        disabled.append(channel_id)
            if followers and disabled:
                # The followers of a channel disabled just now were skipped with it.
                ended = sorted({c.order_key for c in done if c.order_key and c.status != "pending"})
                followers = bool(await conn.fetch(FOLLOWER, ended))
            if followers:
                await conn.execute(SHARE)
            return Recorded(followers, tuple(disabled))

    async def _insert_attempts(
        self, conn: asyncpg.Connection, attempts: list[tuple[Any, ...]], worker: str
    ) -> None:
        """The batch's attempt rows in one statement; those that exist already go through
        the fenced upsert, row by row (rare: a batch written again, or a taken-over
        delivery whose attempt two workers made)."""
        columns = list(zip(*attempts, strict=True))
        inserted = await conn.fetch(INSERT_ATTEMPTS, *columns[:14], worker)
        if len(inserted) == len(attempts):
            return
        new = {(r["delivery_id"], r["series"], r["number"]) for r in inserted}
        again = [a for a in attempts if (a[0], a[1], a[2]) not in new]
        # The JSON columns (request and response headers) as values for the codec.
        await conn.executemany(
            INSERT_ATTEMPT,
            [
                (
                    *a[:7],
                    orjson.loads(a[7]),
                    *a[8:13],
                    None if a[13] is None else orjson.loads(a[13]),
                    *a[14:],
                )
                for a in again
            ],
        )

    async def release_held(self, now: float) -> int:
        async with self._transaction() as conn:
            done = await conn.execute(RELEASE, now, time.time(), datetime.now(UTC))
            return int(done.rsplit(" ", 1)[-1])  # "UPDATE n"

    async def heartbeat(self, worker: str, alive_until: float, forget_before: float) -> list[str]:
        async with self._transaction() as conn:
            await conn.execute(HEARTBEAT, worker, datetime.now(UTC), alive_until)
            await conn.execute(FORGET, forget_before)
            return [r["name"] for r in await conn.fetch(LAPSED, time.time())]

    async def leave(self, worker: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(LEAVE, worker)
