"""The delivery queue on PostgreSQL: named queries on an asyncpg pool of the worker's own.

Concurrent workers take disjoint rows without waiting for each other: a claim selects its
candidates with ``FOR UPDATE OF d SKIP LOCKED``, so rows another worker is claiming right
now are passed over and the next due ones taken instead, and every row it returns is
locked and checked again against the newest committed version. It then leases the rows it
keeps by id. Before, the candidates were read without locks and only the lease skipped
locked rows: two workers woken by the same NOTIFY read the same oldest rows, one leased
them all, the other came back empty and slept until its next poll (splits like
19,002/998 on two workers, one of four idle).

A claim is one statement, and so is the common result write (docs/decisions.md, D69):
PostgreSQL shares the cores with the worker and spends about 100 µs of CPU on any
statement, BEGIN and COMMIT included, and at an API-paced load each notification costs a
claim and a write. A single statement needs no BEGIN and COMMIT: it is a transaction of
its own. The rare paths of a write (deferrals, a failure that may disable a channel, an
attempt row that exists already) run in a transaction of several statements.

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
import re
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
    HealthRow,
    QueueUnavailable,
    Recorded,
    health_rows,
    hour_rows,
    override_pairs,
    result_rows,
    select_list,
    to_check,
)

_CLAIMED = select_list(CLAIMED_COLUMNS, Claimed._fields)


def _claim(dead: bool, exclude: bool) -> str:
    """The claim, one statement: due deliveries that may go out now, oldest first, with
    their events (per channel x run x target only the oldest pending one), locked and
    passed over where another transaction holds them; of those, at most each channel's
    room, leased; and the channel (and override) rows rendering needs.

    Parameters: now, limit, lease until, owner, the room's channel ids and counts (arrays),
    the cap of a channel not in them[, dead owners][, channel ids to skip]. Rows: one per
    leased delivery in claim order (Claimed's fields but the lease, ``taken_over``, then
    the channel's columns on the first row of each channel and the override's on the first
    row of each channel x project, NULL elsewhere), each with the counts of candidates and
    of leased rows; one row of NULLs with the counts when nothing was leased.
    """
    extra = 8
    dead_sql = exclude_sql = ""
    if dead:
        dead_sql, extra = f"OR d.lease_owner = ANY(${extra}::text[])", extra + 1
    if exclude:
        exclude_sql = f"AND NOT (d.channel_id = ANY(${extra}::integer[]))"
    channel = ", ".join(f"ch.{c} AS ch_{c}" for c in CHANNEL_COLUMNS)
    override = ", ".join(f"o.{c} AS o_{c}" for c in OVERRIDE_COLUMNS)
    # MATERIALIZED: the candidates are locked once, whatever reads them. taken_over: whether
    # the row was leased before (a claim over an expired lease, or over a lapsed worker's),
    # read under the row lock. The choice is choose()'s: a row is kept when fewer than its
    # channel's room of that channel's rows come before it. The lease is by id (= ANY of
    # an array: a join back to the table was planned as a hash join over all of it). When
    # candidates are left beside leased ones, NOTIFY (at commit): other workers may have
    # found them locked. A claim that leased nothing stays silent: listening workers would
    # otherwise wake each other (and themselves) in turn for rows no one has room for.
    return f"""
WITH due AS MATERIALIZED (
    SELECT {_CLAIMED}, d.next_attempt_at, d.lease_until IS NOT NULL AS taken_over
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
), ranked AS (
    SELECT due.*,
        row_number() OVER (PARTITION BY channel_id ORDER BY next_attempt_at, id) AS nth,
        row_number() OVER (PARTITION BY channel_id, project_id
                           ORDER BY next_attempt_at, id) AS nth_of_project
    FROM due
), chosen AS (
    SELECT r.* FROM ranked r
    LEFT JOIN unnest($5::integer[], $6::integer[]) AS room(channel_id, n)
        ON room.channel_id = r.channel_id
    WHERE r.nth <= coalesce(room.n, $7)
), leased AS (
    UPDATE deliveries SET lease_until = $3, lease_owner = $4
    WHERE id = ANY(ARRAY(SELECT id FROM chosen))
), counts AS MATERIALIZED (
    SELECT n.*, CASE WHEN n.leased > 0 AND n.leased < n.candidates
        THEN pg_notify('{NOTIFY_CHANNEL}', '') IS NULL END AS shared
    FROM (SELECT (SELECT count(*) FROM due) AS candidates,
                 (SELECT count(*) FROM chosen) AS leased) AS n
)
SELECT {", ".join(f"c.{f}" for f in Claimed._fields[:-1])}, c.taken_over,
    counts.candidates, counts.leased, {channel}, {override}
FROM counts
LEFT JOIN chosen c ON true
LEFT JOIN channels ch ON c.nth = 1 AND ch.id = c.channel_id
LEFT JOIN channel_overrides o ON c.nth_of_project = 1
    AND o.channel_id = c.channel_id AND o.project_id = c.project_id
ORDER BY c.next_attempt_at, c.id
"""


# Sent (at commit) by a result write after which a waiting delivery of an ordered sequence
# may go (and by a claim that locked due rows it did not keep, in its statement): other
# workers may have found those rows locked, or not due, and would otherwise wait for their
# next poll.
SHARE = f"NOTIFY {NOTIFY_CHANNEL}"

CLAIM = {
    (dead, exclude): _claim(dead, exclude) for dead in (False, True) for exclude in (False, True)
}
# Where each part of a claim's row is (CLAIM's docstring).
_TAKEN_OVER = len(Claimed._fields) - 1
_CANDIDATES, _LEASED = _TAKEN_OVER + 1, _TAKEN_OVER + 2
_CHANNEL = slice(_LEASED + 1, _LEASED + 1 + len(CHANNEL_COLUMNS))
_OVERRIDE = slice(_CHANNEL.stop, _CHANNEL.stop + len(OVERRIDE_COLUMNS))
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
_FOLLOWER = """EXISTS (
    SELECT 1 FROM done JOIN deliveries p ON p.order_key = done.order_key
    WHERE done.status <> 'pending' AND p.status = 'pending' AND p.id > done.id)"""
_FOLLOWS = f"\nSELECT {_FOLLOWER}\n"
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


def _shifted(sql: str, by: int) -> str:
    """``sql`` with its parameters $n renumbered $(n + by)."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m[1]) + by}", sql)


def _write(with_health: bool) -> str:
    """The common result write, one statement: INSERT_ATTEMPTS, then COMPLETE (or
    COMPLETE_WITH_HEALTH), and NOTIFY when a follower may go. The rest applies only if
    every attempt row was new (``fits``); otherwise only the new rows are written, and the
    caller writes the batch again in a transaction, through INSERT_ATTEMPT's fenced upsert
    (the lease that fences it is cleared by COMPLETE, so that must come after it).

    Parameters: INSERT_ATTEMPTS's ($1-$15), then COMPLETE's or COMPLETE_WITH_HEALTH's from
    $16. One row: whether it all applied, whether a follower may go (then NOTIFY was sent).
    """
    fits = "(SELECT ok FROM fits)"
    done = _DONE.replace("WHERE d.id = ANY", f"WHERE {fits} AND d.id = ANY")
    parts = [
        f"attempts AS ({INSERT_ATTEMPTS})",
        "fits AS MATERIALIZED (SELECT count(*) = cardinality($1::integer[]) AS ok FROM attempts)",
    ]
    if with_health:
        rows = f"{_HEALTH_ROWS} AS h WHERE {fits}"
        parts.append(f"health AS ({HEALTH.replace('VALUES ($1, $2, $3, $4, $5, $6)', rows)})")
        rows = f"{_HOURS_ROWS} AS h WHERE {fits}"
        parts.append(f"hours AS ({HOURS.replace('VALUES ($1, $2, $3, $4)', rows)})")
    parts.append(done)
    rest = ", ".join(_shifted(p, 15) for p in parts[2:])
    return (
        f"WITH {parts[0]}, {parts[1]}, {rest}\n"
        f"SELECT {fits} AS written, f.followers, "
        f"CASE WHEN f.followers THEN pg_notify('{NOTIFY_CHANNEL}', '') IS NULL END "
        f"FROM (SELECT {_FOLLOWER} AS followers) AS f"
    )


WRITE = {with_health: _write(with_health) for with_health in (False, True)}
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


def _completion_arrays(
    updates: list[tuple[Any, ...]],
    health: list[HealthRow],
    hours: list[tuple[int, int, int, int]],
    stamp: datetime,
) -> list[Any]:
    """COMPLETE's parameters, or COMPLETE_WITH_HEALTH's with ``health``: one array per
    column of the deliveries' updates, the time of the write, then the health and hourly
    rows' columns."""
    columns: list[Any] = list(zip(*updates, strict=True))
    del columns[5]  # updated at: one value for the batch
    if not health:
        return [*columns, stamp]
    rows = (*zip(*health, strict=True), *zip(*hours, strict=True))
    return [*columns, stamp, *(list(c) for c in rows)]


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
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection outside a transaction: each statement commits on its own."""
        await self.open()
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            # A restarted server leaves every pooled connection dead: replace them all
            # now rather than fail once per connection.
            await self._pool.expire_connections()
            raise QueueUnavailable(f"{exc.__class__.__name__}: {exc}") from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._connection() as conn, conn.transaction():
            yield conn

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
        room = channel_room or {}
        now = time.time()
        until = now + lease_seconds
        params: list[Any] = [
            now,
            limit,
            until,
            owner,
            list(room),
            list(room.values()),
            limit if channel_cap is None else channel_cap,
        ]
        if dead:
            params.append(dead)
        if exclude_channels:
            params.append(sorted(exclude_channels))
        # One statement, so no BEGIN and COMMIT: the rows it locked and did not lease are
        # free again at its end.
        async with self._connection() as conn:
            rows = await conn.fetch(CLAIM[(bool(dead), bool(exclude_channels))], *params)
        candidates, leased = rows[0][_CANDIDATES], rows[0][_LEASED]
        left = leased < candidates
        full = candidates >= limit and not left
        if not leased:
            return ClaimBatch([], {}, {}, full, left)
        claimed = [Claimed._make((*r[:_TAKEN_OVER], until)) for r in rows]
        channels: dict[int, dict[str, Any]] = {}
        overrides: dict[tuple[int, int], dict[str, Any]] = {}
        for r in rows:
            if r[_CHANNEL.start] is not None:
                channels[r[_CHANNEL.start]] = dict(zip(CHANNEL_COLUMNS, r[_CHANNEL], strict=True))
            if r[_OVERRIDE.start] is not None:
                o = dict(zip(OVERRIDE_COLUMNS, r[_OVERRIDE], strict=True))
                overrides[(o.pop("channel_id"), o.pop("project_id"))] = o
        # Only the overrides that are part of how each project sees its channel.
        pairs = override_pairs(claimed, channels)
        overrides = {k: v for k, v in overrides.items() if k in pairs}
        taken_over = sum(1 for r in rows if r[_TAKEN_OVER])
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
        hours = hour_rows(done, now) if health else []
        completed = _completion_arrays(updates, health, hours, stamp) if done else []
        if hours and hours[0][1] != self._forgot_hour:
            # Once an hour per worker, on its own: nothing needs it in the write's transaction.
            async with self._connection() as conn:
                await conn.execute(FORGET_HOURS, hours[0][1] - KEEP_HOURS)
            self._forgot_hour = hours[0][1]
        # The common write is one statement; deferrals and failures that may disable a
        # channel are rare, and take the transaction below.
        if done and not deferred and not to_check(done):
            attempt_columns = list(zip(*attempts, strict=True))[:14]
            async with self._connection() as conn:
                written, followers, _ = await conn.fetchrow(
                    WRITE[bool(health)], *attempt_columns, worker, *completed
                )
            if written:
                return Recorded(bool(followers))
            # An attempt row existed already: only the new ones were written (they are
            # written again, to the same values, by the upsert below).
        async with self._transaction() as conn:
            followers = False
            if done:
                await self._insert_attempts(conn, attempts, worker)
                complete = COMPLETE_WITH_HEALTH if health else COMPLETE
                followers = bool(await conn.fetchval(complete, *completed))
            if deferred:
                await conn.executemany(
                    DEFER, [(d.due, d.delivery_id, d.series, d.lease_until) for d in deferred]
                )
            disabled = []
            if health:
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
