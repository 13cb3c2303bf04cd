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

The statements themselves are in ``postgres_statements.py``.
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
from loadbell.store.queue import (
    CHANNEL_COLUMNS,
    KEEP_HOURS,
    OVERRIDE_COLUMNS,
    ClaimBatch,
    Claimed,
    Completion,
    Deferral,
    HealthRow,
    QueueConflict,
    QueueUnavailable,
    Recorded,
    attempt_row,
    health_rows,
    hour_rows,
    override_pairs,
    result_records,
    to_check,
)
from loadbell.store.queue.postgres_statements import (
    CANDIDATES,
    CHANNEL_PART,
    CLAIM,
    COMPLETE,
    COMPLETE_WITH_HEALTH,
    DEFER,
    DISABLE,
    FOLLOWER,
    FORGET,
    FORGET_HOURS,
    HEALTH_OF,
    HEARTBEAT,
    INSERT_ATTEMPT,
    INSERT_ATTEMPTS,
    LAPSED,
    LEASED,
    LEAVE,
    OVERRIDE_PART,
    RELEASE,
    SHARE,
    SKIP_PENDING,
    TAKEN_OVER,
    WRITE,
)

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
# A deadlock or serialization failure, which the server broke by rolling back this statement.
_CONFLICT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
CONNECT_TIMEOUT = 5.0  # seconds to open a connection
STATEMENT_TIMEOUT = 30.0  # seconds: a statement on a server that stopped answering


def _same(value: Any) -> Any:
    """asyncpg takes datetimes and (with the json codec) dicts as they are."""
    return value


async def set_codecs(conn: asyncpg.Connection) -> None:
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


def completion_params(
    results: list[tuple[Any, ...]],
    health: list[HealthRow],
    hours: list[tuple[int, int, int, int]],
    stamp: datetime,
) -> list[Any]:
    """COMPLETE's parameters after the results, or COMPLETE_WITH_HEALTH's with ``health``:
    the results' delivery ids, the time of the write, then the health and hourly rows'
    columns, an array each."""
    ids = [r[0] for r in results]
    if not health:
        return [ids, stamp]
    rows = (*zip(*health, strict=True), *zip(*hours, strict=True))
    return [ids, stamp, *(list(c) for c in rows)]


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
                init=set_codecs,
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
        except _CONFLICT as exc:
            # The server rolled the statement back and the connection is fine, so the pool
            # stays as it is.
            raise QueueConflict(f"{exc.__class__.__name__}: {exc}") from exc
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
        candidates, leased = rows[0][CANDIDATES], rows[0][LEASED]
        left = leased < candidates
        full = candidates >= limit and not left
        if not leased:
            return ClaimBatch([], {}, {}, full, left)
        claimed = [Claimed._make((*r[:TAKEN_OVER], until)) for r in rows]
        channels: dict[int, dict[str, Any]] = {}
        overrides: dict[tuple[int, int], dict[str, Any]] = {}
        for r in rows:
            if r[CHANNEL_PART.start] is not None:
                channels[r[CHANNEL_PART.start]] = dict(
                    zip(CHANNEL_COLUMNS, r[CHANNEL_PART], strict=True)
                )
            if r[OVERRIDE_PART.start] is not None:
                o = dict(zip(OVERRIDE_COLUMNS, r[OVERRIDE_PART], strict=True))
                overrides[(o.pop("channel_id"), o.pop("project_id"))] = o
        # Only the overrides that are part of how each project sees its channel.
        pairs = override_pairs(claimed, channels)
        overrides = {k: v for k, v in overrides.items() if k in pairs}
        taken_over = sum(1 for r in rows if r[TAKEN_OVER])
        return ClaimBatch(claimed, channels, overrides, full, left, taken_over=taken_over)

    async def record(
        self, done: Sequence[Completion], deferred: Sequence[Deferral], worker: str
    ) -> Recorded:
        if not done and not deferred:
            return Recorded()
        stamp = datetime.now(UTC)
        results = result_records(done, stamp=_same, as_json=json_dumps)
        now = time.time()
        health = health_rows(done, now)
        hours = hour_rows(done, now) if health else []
        completed = completion_params(results, health, hours, stamp) if done else []
        if hours and hours[0][1] != self._forgot_hour:
            # Once an hour per worker, on its own: nothing needs it in the write's transaction.
            async with self._connection() as conn:
                await conn.execute(FORGET_HOURS, hours[0][1] - KEEP_HOURS)
            self._forgot_hour = hours[0][1]
        # The common write is one statement; deferrals and failures that may disable a
        # channel are rare, and take the transaction below.
        if done and not deferred and not to_check(done):
            async with self._connection() as conn:
                written, followers, _ = await conn.fetchrow(
                    WRITE[bool(health)], results, worker, *completed
                )
            if written:
                return Recorded(bool(followers))
            # An attempt row existed already: only the new ones were written (they are
            # written again, to the same values, by the upsert below).
        async with self._transaction() as conn:
            followers = False
            if done:
                await self._insert_attempts(conn, results, worker)
                complete = COMPLETE_WITH_HEALTH if health else COMPLETE
                followers = bool(await conn.fetchval(complete, results, *completed))
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
        self, conn: asyncpg.Connection, results: list[tuple[Any, ...]], worker: str
    ) -> None:
        """The batch's attempt rows in one statement; those that exist already go through
        the fenced upsert, row by row (rare: a batch written again, or a taken-over
        delivery whose attempt two workers made)."""
        inserted = await conn.fetch(INSERT_ATTEMPTS, results, worker)
        if len(inserted) == len(results):
            return
        new = {(r["delivery_id"], r["series"], r["number"]) for r in inserted}
        again = [attempt_row(r, worker) for r in results if (r[0], r[1], r[2]) not in new]
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
