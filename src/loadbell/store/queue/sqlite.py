"""The delivery queue on SQLite: named queries on a stdlib ``sqlite3`` connection of the
worker's own, run on the event loop's thread.

Each transaction runs start to finish without yielding (a claim or a batch of results is a
few statements of 5-20 µs each); only taking the write lock may wait, and it waits
asynchronously (``store/sqlite_driver.py: take_write_lock``). ``BEGIN IMMEDIATE`` also means
nothing else can change the candidates a claim has read before it leases them, so a claim
leases its rows without reading them again.

List parameters are one JSON text each (``IN (SELECT value FROM json_each(?))``), so each
statement is prepared once whatever the list's length.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from loadbell.domain.health import REASON_DISABLED, disabled_reason
from loadbell.store.db import json_dumps, sqlite_pragmas
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
from loadbell.store.sqlite_driver import (
    READ_BUSY_TIMEOUT_MS,
    begin_immediate,
    in_wal_mode,
    take_write_lock,
)

_CLAIMED = select_list(CLAIMED_COLUMNS, Claimed._fields)

# Due deliveries that may go out now, oldest first, with their events; per channel x run x
# target (order key) only the oldest pending one. ``status = 'pending'`` is written out: the
# due and order indexes are partial on it (tables.is_pending). The last column, past
# Claimed's, says whether the row was leased before: a claim over an expired lease.
_DUE = f"""
SELECT {_CLAIMED}, d.lease_until IS NOT NULL AS taken_over
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.next_attempt_at <= :now
  AND (d.lease_until IS NULL OR d.lease_until < :now {{dead}})
  AND (d.order_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.order_key = d.order_key AND p.status = 'pending' AND p.id < d.id))
  {{exclude}}
ORDER BY d.next_attempt_at, d.id
LIMIT :limit
"""
_DEAD = "OR d.lease_owner IN (SELECT value FROM json_each(:dead))"
_EXCLUDE = "AND d.channel_id NOT IN (SELECT value FROM json_each(:excluded))"
DUE = {
    (dead, exclude): _DUE.format(dead=_DEAD if dead else "", exclude=_EXCLUDE if exclude else "")
    for dead in (False, True)
    for exclude in (False, True)
}
LEASE = """
UPDATE deliveries SET lease_until = :until, lease_owner = :owner
WHERE id IN (SELECT value FROM json_each(:ids))
"""
CHANNELS = f"""
SELECT {", ".join(CHANNEL_COLUMNS)} FROM channels WHERE id IN (SELECT value FROM json_each(:ids))
"""
OVERRIDES = f"""
SELECT {", ".join(OVERRIDE_COLUMNS)} FROM channel_overrides
WHERE channel_id IN (SELECT value FROM json_each(:ids))
"""
# executemany statements take positional rows (a dict per row costs more than the
# statement): the parameters are listed beside each.
# status, attempts, next attempt at, error, status code, updated at; id, series, lease until
COMPLETE = """
UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, lease_until = NULL,
    lease_owner = NULL, last_error = ?, last_status_code = ?, updated_at = ?
WHERE id = ? AND series = ? AND lease_until = ?
"""
# One attempt is one row (uq_delivery_attempts_number), however often a batch is written.
# When two workers made the same attempt (one after losing its lease), the row is the one
# whose claim still holds: its result is the delivery's. Written before the delivery's
# update, which clears the lease. Parameters: the row, then the claim's lease until.
INSERT_ATTEMPT = """
INSERT INTO delivery_attempts (delivery_id, series, number, started_at, duration_ms, outcome,
    request_url, request_headers, response_status, response_body, error, request_body,
    request_body_bytes, response_headers, worker)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (delivery_id, series, number) DO UPDATE SET
    started_at = excluded.started_at, duration_ms = excluded.duration_ms,
    outcome = excluded.outcome, request_url = excluded.request_url,
    request_headers = excluded.request_headers,
    response_status = excluded.response_status, response_body = excluded.response_body,
    error = excluded.error, request_body = excluded.request_body,
    request_body_bytes = excluded.request_body_bytes,
    response_headers = excluded.response_headers, worker = excluded.worker
WHERE EXISTS (
    SELECT 1 FROM deliveries d
    WHERE d.id = excluded.delivery_id AND d.series = excluded.series AND d.lease_until = ?)
"""
# due; id, series, lease until
DEFER = """
UPDATE deliveries SET next_attempt_at = ?, lease_until = NULL, lease_owner = NULL
WHERE id = ? AND series = ? AND lease_until = ?
"""
FOLLOWER = """
SELECT 1 FROM deliveries
WHERE order_key IN (SELECT value FROM json_each(:keys)) AND status = 'pending' LIMIT 1
"""
# One row per channel (target '') and target a batch of results ended deliveries of; a
# success in the batch (last_success_at set) resets the count. Parameters: HealthRow.
HEALTH = """
INSERT INTO channel_health (channel_id, target, consecutive_failures, first_failure_at,
    last_success_at, last_failure_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (channel_id, target) DO UPDATE SET
    consecutive_failures = CASE WHEN excluded.last_success_at IS NOT NULL
        THEN excluded.consecutive_failures
        ELSE channel_health.consecutive_failures + excluded.consecutive_failures END,
    first_failure_at = CASE WHEN excluded.last_success_at IS NOT NULL
        THEN excluded.first_failure_at
        ELSE coalesce(channel_health.first_failure_at, excluded.first_failure_at) END,
    last_success_at = coalesce(excluded.last_success_at, channel_health.last_success_at),
    last_failure_at = coalesce(excluded.last_failure_at, channel_health.last_failure_at)
"""
HOURS = """
INSERT INTO channel_health_hours (channel_id, hour, succeeded, failed) VALUES (?, ?, ?, ?)
ON CONFLICT (channel_id, hour) DO UPDATE SET
    succeeded = channel_health_hours.succeeded + excluded.succeeded,
    failed = channel_health_hours.failed + excluded.failed
"""
FORGET_HOURS = "DELETE FROM channel_health_hours WHERE hour < ?"
HEALTH_OF = """
SELECT consecutive_failures, first_failure_at FROM channel_health
WHERE channel_id = :id AND target = ''
"""
DISABLE = """
UPDATE channels SET enabled = 0, disabled_at = :at, disabled_reason = :why
WHERE id = :id AND disabled_at IS NULL AND deleted_at IS NULL
"""
# A disabled channel's pending deliveries end skipped (leased ones too: a result of an
# attempt under way is then fenced out and only logged), and so do its held ones.
SKIP_PENDING = """
UPDATE deliveries SET status = 'skipped', reason = :reason, lease_until = NULL,
    lease_owner = NULL, updated_at = :at
WHERE channel_id = :id AND status IN ('pending', 'held')
"""
# Held deliveries whose quiet hours ended (ix_deliveries_held): pending, due at once. The
# status is written out, so the partial index applies.
RELEASE = """
UPDATE deliveries SET status = 'pending', next_attempt_at = :due, updated_at = :at
WHERE status = 'held' AND next_attempt_at <= :now
"""
HEARTBEAT = """
INSERT INTO workers (name, started_at, alive_until) VALUES (:name, :started_at, :alive_until)
ON CONFLICT (name) DO UPDATE SET alive_until = excluded.alive_until
"""
FORGET = "DELETE FROM workers WHERE alive_until < :before"
LAPSED = "SELECT name FROM workers WHERE alive_until < :now"
LEAVE = "DELETE FROM workers WHERE name = :name"


# A worker converts a timestamp or two per delivery, and ``datetime.replace`` cost more
# than the rest of the conversion: it parses its eight keyword arguments each time. So the
# UTC offset is cut off as text and added back as text instead (D81).
def timestamp(value: datetime) -> str:
    """A ``UTCDateTime`` column's value as SQLAlchemy stores it on SQLite: naive UTC,
    always with microseconds ("2026-12-07 21:06:33.000000", 26 characters)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without "+00:00"


def read_timestamp(value: str) -> datetime:
    """A ``UTCDateTime`` column's value read from SQLite (naive UTC text, as
    :func:`timestamp` or SQLAlchemy stored it) as an aware datetime."""
    return datetime.fromisoformat(value + "+00:00")


class SQLiteQueue:
    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        # Claims and results may be lost in a power cut: the delivery is then sent again,
        # which at-least-once delivery allows. So never more than NORMAL (no fsync per
        # commit in WAL mode; it survives a crash of the process).
        levels = ("OFF", "NORMAL", "FULL", "EXTRA")
        self.synchronous = min(synchronous, "NORMAL", key=levels.index)
        self._conn: sqlite3.Connection | None = None
        self._busy_off = False  # the connection's busy timeout is 0 (WAL mode)
        self._turn = asyncio.Lock()
        self._forgot_hour = 0  # the last hour old channel_health_hours rows were removed

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=READ_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                for pragma in sqlite_pragmas(self.synchronous):
                    conn.execute(pragma)
                conn.execute("SELECT 1 FROM workers LIMIT 1")  # the schema is there
                # Every statement from here on runs in a write transaction, where nothing
                # waits for a lock in WAL mode once BEGIN IMMEDIATE has taken the write
                # lock, and BEGIN IMMEDIATE must not wait on the loop: SQLite's busy
                # handler stays off for good, instead of off and on again around each
                # BEGIN (two statements per transaction; D71). In a rollback journal (WAL
                # could not be set) COMMIT waits for readers: then it is off and on again.
                self._busy_off = in_wal_mode(conn)
                if self._busy_off:
                    conn.execute("PRAGMA busy_timeout = 0")
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"{self.path}: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[sqlite3.Connection]:
        """A write transaction, committed at the end. Claims, results and the heartbeat
        share the connection, so they take turns (a transaction may wait for the write
        lock, and another must not begin on the connection meanwhile)."""
        async with self._turn:
            await self.open()
            conn = self._conn
            assert conn is not None
            try:
                if self._busy_off:
                    await take_write_lock(conn)
                else:
                    await begin_immediate(conn)
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._failed(conn, exc)
                raise QueueUnavailable(str(exc)) from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _failed(self, conn: sqlite3.Connection, exc: sqlite3.Error) -> None:
        """Roll back what the transaction did. A connection that failed for anything but
        a busy lock is opened afresh next time."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            busy = False
        else:
            busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
        if not busy:
            self._conn = None
            conn.close()

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
        async with self._transaction() as conn:
            # Read once the transaction holds the write lock: a claim that waited for it
            # still leases for the full ``lease_seconds``.
            now = time.time()
            params: dict[str, Any] = {"now": now, "limit": limit}
            if dead_owners:
                params["dead"] = json_dumps(sorted(dead_owners))
            if exclude_channels:
                params["excluded"] = json_dumps(sorted(exclude_channels))
            sql = DUE[(bool(dead_owners), bool(exclude_channels))]
            candidates = conn.execute(sql, params).fetchall()
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
            ids = json_dumps([r[0] for r in chosen])
            conn.execute(LEASE, {"until": until, "owner": owner, "ids": ids})
            loads = orjson.loads
            claimed = [
                Claimed._make((*r[:9], read_timestamp(r[9]), r[10], loads(r[11]), until))
                for r in chosen
            ]
            channels = self._channels(conn, {c.channel_id for c in claimed})
            pairs = override_pairs(claimed, channels)
            overrides = self._overrides(conn, pairs)
            # BEGIN IMMEDIATE: the rows read are the rows leased, lease and all.
            taken_over = sum(r[-1] for r in chosen)
        return ClaimBatch(claimed, channels, overrides, full, left, taken_over=taken_over)

    def _channels(self, conn: sqlite3.Connection, ids: Collection[int]) -> dict[int, Any]:
        """The claimed deliveries' channels, as ``store.channels.channel_from_row`` reads
        them."""
        loads = orjson.loads
        out = {}
        for r in conn.execute(CHANNELS, {"ids": json_dumps(sorted(ids))}):
            row = dict(zip(CHANNEL_COLUMNS, r, strict=True))
            row["enabled"] = bool(row["enabled"])
            for key in ("config", "events", "filters", "retry"):
                row[key] = loads(row[key])
            out[row["id"]] = row
        return out

    def _overrides(
        self, conn: sqlite3.Connection, pairs: Collection[tuple[int, int]]
    ) -> dict[tuple[int, int], dict[str, Any]]:
        if not pairs:
            return {}
        ids = json_dumps(sorted({c for c, _ in pairs}))
        out = {}
        for r in conn.execute(OVERRIDES, {"ids": ids}):
            row = dict(zip(OVERRIDE_COLUMNS, r, strict=True))
            key = (row["channel_id"], row["project_id"])
            if key in pairs:
                enabled = row["enabled"]
                out[key] = {
                    "enabled": None if enabled is None else bool(enabled),
                    "config": orjson.loads(row["config"]),
                    "secrets": row["secrets"],
                }
        return out

    async def record(
        self, done: Sequence[Completion], deferred: Sequence[Deferral], worker: str
    ) -> Recorded:
        if not done and not deferred:
            return Recorded()
        stamp = timestamp(datetime.now(UTC))
        updates, attempts = result_rows(
            done, worker, now=stamp, stamp=timestamp, as_json=json_dumps
        )
        now = time.time()
        health = health_rows(done, now)
        async with self._transaction() as conn:
            if done:
                conn.executemany(INSERT_ATTEMPT, attempts)
                conn.executemany(COMPLETE, updates)
            if deferred:
                conn.executemany(
                    DEFER, [(d.due, d.delivery_id, d.series, d.lease_until) for d in deferred]
                )
            disabled = []
            if health:
                conn.executemany(HEALTH, health)
                hours = hour_rows(done, now)
                conn.executemany(HOURS, hours)
                if hours[0][1] != self._forgot_hour:  # once an hour per worker
                    conn.execute(FORGET_HOURS, (hours[0][1] - KEEP_HOURS,))
                    self._forgot_hour = hours[0][1]
                for channel_id, rule in to_check(done).items():
                    failures, first = conn.execute(HEALTH_OF, {"id": channel_id}).fetchone()
                    if not rule.reached(failures, first, now):
                        continue
                    why = disabled_reason(failures, first)
                    at = {"id": channel_id, "at": stamp}
                    if conn.execute(DISABLE, {**at, "why": why}).rowcount:
                        conn.execute(SKIP_PENDING, {**at, "reason": REASON_DISABLED})
                        disabled.append(channel_id)
            ended = sorted({c.order_key for c in done if c.order_key and c.status != "pending"})
            followers = bool(ended) and bool(
                conn.execute(FOLLOWER, {"keys": json_dumps(ended)}).fetchall()
            )
            return Recorded(followers, tuple(disabled))

    async def release_held(self, now: float) -> int:
        async with self._transaction() as conn:
            at = timestamp(datetime.now(UTC))
            cursor = conn.execute(RELEASE, {"due": time.time(), "at": at, "now": now})
            return int(cursor.rowcount)

    async def heartbeat(self, worker: str, alive_until: float, forget_before: float) -> list[str]:
        async with self._transaction() as conn:
            conn.execute(
                HEARTBEAT,
                {
                    "name": worker,
                    "started_at": timestamp(datetime.now(UTC)),
                    "alive_until": alive_until,
                },
            )
            conn.execute(FORGET, {"before": forget_before})
            return [r[0] for r in conn.execute(LAPSED, {"now": time.time()})]

    async def leave(self, worker: str) -> None:
        async with self._transaction() as conn:
            conn.execute(LEAVE, {"name": worker})
