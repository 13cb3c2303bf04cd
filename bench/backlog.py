"""Staging what the benchmark delivers: one webhook channel and a backlog of N deliveries.

The backlog looks like N/2 runs that each started and finished (``test.started`` then
``test.finished``, one ordered sequence per run), written with bulk Core inserts: staging
20,000 deliveries through the API would measure ingest, not delivery.
"""

from __future__ import annotations

import copy
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import EventType
from loadbell.domain.statuses import RunStatus
from loadbell.security.secretbox import SecretBox
from loadbell.services.channel_config import split_secrets
from loadbell.store.context import run_context
from loadbell.store.db import reader, sqlite_path
from loadbell.store.outbox import order_key
from loadbell.store.tables import (
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    channels,
    deliveries,
    events,
    load_tests,
    run_status_changes,
    runs,
)
from loadbell.values import Message, OutboundRequest

_CHUNK = 2_000  # rows per executemany: bounded memory, few round trips
_SPACING = 1e-5  # seconds between the due times of consecutive staged deliveries

ORG_ID = 1  # made by accounts.bootstrap
PROJECT_ID = 1
USER_ID = 1


async def create_webhook_channel(
    conn: AsyncConnection, box: SecretBox, url: str, subscribed: list[str]
) -> int:
    """An organization-wide webhook channel in the loadimpact format, as the API stores it."""
    kind = WebhookKind()
    public, secret = split_secrets(kind.name, kind.validate({"url": url, "format": "loadimpact"}))
    channel_id = (
        await conn.execute(
            sa.insert(channels)
            .values(
                organization_id=ORG_ID,
                project_id=None,
                kind=kind.name,
                name="bench",
                enabled=True,
                config=public,
                secrets=box.seal(secret),
                events=subscribed,
                filters={},
                retry={},
            )
            .returning(channels.c.id)
        )
    ).scalar_one()
    return int(channel_id)


async def create_load_test(conn: AsyncConnection, name: str = "bench") -> int:
    return int(
        (
            await conn.execute(
                sa.insert(load_tests)
                .values(project_id=PROJECT_ID, name=name)
                .returning(load_tests.c.id)
            )
        ).scalar_one()
    )


async def create_runs(conn: AsyncConnection, load_test_id: int, count: int) -> list[int]:
    """``count`` runs at status Created, as ``POST /runs`` leaves them."""
    row = {
        "load_test_id": load_test_id,
        "project_id": PROJECT_ID,
        "organization_id": ORG_ID,
        "status": int(RunStatus.CREATED),
        "trigger": "manual",
        "user_id": USER_ID,
        "metrics": {},
    }
    ids: list[int] = []
    for start in range(0, count, _CHUNK):
        size = min(_CHUNK, count - start)
        result = await conn.execute(
            sa.insert(runs).returning(runs.c.id, sort_by_parameter_order=True), [row] * size
        )
        chunk = [int(r[0]) for r in result]
        await conn.execute(
            sa.insert(run_status_changes),
            [{"run_id": i, "status": int(RunStatus.CREATED)} for i in chunk],
        )
        ids.extend(chunk)
    return ids


def _run_context(template: dict[str, Any], run_id: int, status: RunStatus) -> dict[str, Any]:
    ctx = copy.deepcopy(template)
    ctx["run"].update(id=run_id, status=int(status), status_text=status.text)
    return ctx


async def stage_backlog(
    engine: AsyncEngine,
    box: SecretBox,
    url: str,
    n: int,
    public_url: str,
    channel_count: int = 1,
) -> dict[str, Any]:
    """Stage ``n`` pending deliveries to ``url``, runs spread round-robin over
    ``channel_count`` channels; return one event context (the raw loop sends the same
    body)."""
    subscribed = [EventType.TEST_STARTED.value, EventType.TEST_FINISHED.value]
    async with engine.begin() as conn:
        channel_ids = [
            await create_webhook_channel(conn, box, url, subscribed) for _ in range(channel_count)
        ]
        load_test_id = await create_load_test(conn)
        run_ids = await create_runs(conn, load_test_id, (n + 1) // 2)
        template = await run_context(conn, run_ids[0], public_url)

        now = datetime.now(UTC)
        # As if recorded one by one over the last n x 10 µs: real deliveries are due when
        # their event was recorded, each at its own time. (Identical times would make
        # PostgreSQL sort the whole backlog by id on every claim: its due index has no id.)
        first_due = time.time() - n * _SPACING
        for start in range(0, n, _CHUNK):
            plan = [(run_ids[i // 2], i % 2 == 0) for i in range(start, min(start + _CHUNK, n))]
            result = await conn.execute(
                sa.insert(events).returning(events.c.id, sort_by_parameter_order=True),
                [
                    {
                        "type": (
                            EventType.TEST_STARTED if started else EventType.TEST_FINISHED
                        ).value,
                        "occurred_at": now,
                        "organization_id": ORG_ID,
                        "project_id": PROJECT_ID,
                        "load_test_id": load_test_id,
                        "run_id": run_id,
                        "context": _run_context(
                            template, run_id, RunStatus.RUNNING if started else RunStatus.FINISHED
                        ),
                    }
                    for run_id, started in plan
                ],
            )
            event_ids = [int(r[0]) for r in result]
            await conn.execute(
                sa.insert(deliveries),
                [
                    {
                        "uuid": str(uuid.uuid4()),
                        "event_id": event_id,
                        "channel_id": channel_ids[run_id % channel_count],
                        "target": None,
                        "order_key": order_key(channel_ids[run_id % channel_count], run_id, None),
                        "status": DELIVERY_PENDING,
                        "series": 1,
                        "attempts": 0,
                        "next_attempt_at": first_due + (start + k) * _SPACING,
                        "organization_id": ORG_ID,
                        "event_type": (
                            EventType.TEST_STARTED if started else EventType.TEST_FINISHED
                        ).value,
                        "run_id": run_id,
                    }
                    for k, (event_id, (run_id, started)) in enumerate(
                        zip(event_ids, plan, strict=True)
                    )
                ],
            )
    if engine.dialect.name == "postgresql":
        # Autovacuum would have analyzed a backlog this size within a minute; without
        # statistics the planner evaluates every pending row on each claim.
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE deliveries, events"))
    return _run_context(template, run_ids[0], RunStatus.RUNNING)


async def stage_history(engine: AsyncEngine, box: SecretBox, n: int) -> None:
    """Give a database the past of one in service: ``n`` deliveries already made, of a
    channel since deleted, then statistics, as autovacuum (PostgreSQL) or ``PRAGMA
    optimize`` (SQLite, at ``serve``'s start) keeps them.

    A freshly migrated PostgreSQL database has no statistics and an empty ``deliveries``
    table: statements prepared in its first seconds keep generic plans that scan the table
    sequentially, however many rows it then gets, until autovacuum first analyzes it (its
    naptime is a minute). A 20-second phase would measure only that start."""
    if n <= 0:
        return
    async with engine.connect() as conn:
        before = (await conn.execute(sa.select(sa.func.max(channels.c.id)))).scalar() or 0
    await stage_backlog(engine, box, "http://127.0.0.1:9/history", n, "http://127.0.0.1:9")
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.status == DELIVERY_PENDING)
            .values(status=DELIVERY_SUCCEEDED, attempts=1)
        )
        await conn.execute(
            sa.update(channels).where(channels.c.id > before).values(deleted_at=datetime.now(UTC))
        )
    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE"))
        return
    async with engine.connect() as conn:
        # VACUUM cannot run inside a transaction.
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE"))


def sample_request(url: str, context: dict[str, Any], public_url: str) -> OutboundRequest:
    """What the webhook channel sends for one ``test.started`` event: the raw loop's request."""
    kind = WebhookKind()
    config = {**kind.defaults, **kind.validate({"url": url, "format": "loadimpact"})}
    message = Message(
        delivery_id=str(uuid.uuid4()),
        event_id=1,
        event_type=EventType.TEST_STARTED,
        occurred_at=datetime.now(UTC),
        context=context,
        public_url=public_url,
    )
    return kind.render(message, config)


class PendingProbe:
    """Whether any delivery is still pending: one probe of the partial index, asked every
    few milliseconds while the drain runs, in the worker's own process.

    Through SQLAlchemy the probe cost about 190 µs of CPU, 2 % of the drain it measures (on
    PostgreSQL a pool checkout with its pre-ping, the query and a rollback: three round
    trips). It runs on a plain connection of its own instead: ``sqlite3`` (a reader: in WAL
    mode it never blocks the worker), about 15 µs, or asyncpg, one round trip."""

    _SQL = f"SELECT 1 FROM deliveries WHERE status = '{DELIVERY_PENDING}' LIMIT 1"

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None  # an asyncpg connection, opened on the first probe
        if engine.dialect.name == "sqlite":
            self._sqlite = sqlite3.connect(sqlite_path(str(engine.url)))

    async def any(self) -> bool:
        if self._sqlite is not None:
            return self._sqlite.execute(self._SQL).fetchone() is not None
        if self._pg is None:
            import asyncpg

            url = self._engine.url.set(drivername="postgresql")
            self._pg = await asyncpg.connect(url.render_as_string(hide_password=False))
        return await self._pg.fetchval(self._SQL) is not None

    def server_pids(self) -> list[int]:
        """The PostgreSQL backend serving the probe, if any: the bench's, not the worker's."""
        return [self._pg.get_server_pid()] if self._pg is not None else []

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.terminate()
            self._pg = None


async def count_by_status(engine: AsyncEngine) -> dict[str, int]:
    async with reader(engine).connect() as conn:
        rows = await conn.execute(
            sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
        )
        result = {str(status): int(count) for status, count in rows}
        await conn.rollback()
    return result
