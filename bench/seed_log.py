"""Seed a database with a large delivery log, quickly (1M deliveries in about a minute).

    python -m bench.seed_log [--n 1000000] [--db sqlite|postgresql] [--path FILE | --url URL]

A realistic mix: 4 organizations of very different sizes (the last holds about 1 % of the
log), 2 projects each with 3 load tests, runs with 4 to 6 run events each, 5 channels per
organization (two of them a project's own), every event type, and every delivery status
(pending ones not due for years, so a ``loadbell serve`` on the database sends nothing).
Failed deliveries have 2 attempts, one succeeded delivery in five has one.

The schema is made by the migrations first (``loadbell migrate``), then the rows go in with
multi-row inserts in large transactions (``executemany`` in one transaction on SQLite, COPY
on PostgreSQL). Columns the table does not have (an older schema) are left out, so the
same seed serves the before and after of a schema change. ``seed`` returns what the log
bench needs: the owner's API token and the ids it filters by.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from loadbell.domain.events import EventType
from loadbell.settings import Settings
from loadbell.store import accounts, migrate
from loadbell.store.db import create_engine
from loadbell.store.tables import (
    channels,
    deliveries,
    delivery_attempts,
    events,
    load_tests,
    memberships,
    organizations,
    projects,
    runs,
)

# Share of the log per organization: the last one is small, so an org-scoped query on it
# must not walk the others' rows.
ORG_SHARES = (0.5, 0.3, 0.19, 0.01)
CHANNELS_PER_ORG = 5
# pending deliveries are rare (a live backlog), failures are not.
STATUS_WEIGHTS = {"succeeded": 0.85, "failed": 0.12, "pending": 0.03}
RUN_EVENTS = [
    EventType.TEST_STARTING,
    EventType.TEST_STARTED,
    EventType.TEST_REPORT_INTERMEDIATE,
    EventType.TEST_FINISHED,
    EventType.TEST_REPORT_AVAILABLE,
]
OTHER_EVENTS = [e for e in EventType if e not in RUN_EVENTS]
CHUNK = 20_000  # rows per executemany / COPY batch
FAR_FUTURE = time.time() + 10 * 365 * 86400  # pending, but never due during a bench


@dataclass
class Seeded:
    """What the log bench queries with."""

    token: str
    orgs: list[int]
    channels: dict[int, list[int]]  # organization -> its channels
    runs: dict[int, list[int]]  # organization -> some of its runs (with deliveries)
    deliveries: int = 0
    attempts: int = 0
    events: int = 0
    max_delivery_id: int = 0
    seconds: float = 0.0
    small_org_token: str = ""  # a token of the smallest organization only
    counts: dict[str, int] = field(default_factory=dict)


def _columns(table: Any) -> list[str]:
    return [c.name for c in table.columns]


def _timestamp(at: datetime, sqlite: bool) -> Any:
    # SQLite stores what SQLAlchemy's DateTime writes: naive UTC text.
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at


class Writer:
    """Bulk rows into one backend: sqlite3 executemany in one transaction, or asyncpg COPY."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._db: sqlite3.Connection | None = None
        self._pg: Any = None

    async def open(self) -> None:
        if self.sqlite:
            path = self.url.split("///", 1)[1]
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("PRAGMA foreign_keys=OFF")
            self._db.execute("PRAGMA cache_size=-200000")  # KiB: index pages stay in memory
            self._db.execute("BEGIN")
        else:
            import asyncpg

            self._pg = await asyncpg.connect(self.url.replace("+asyncpg", ""))

    async def rows(self, table: Any, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        names = [c for c in _columns(table) if c in rows[0]]
        records = [tuple(r[c] for c in names) for r in rows]
        if self._db is not None:
            marks = ", ".join("?" for _ in names)
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
            self._db.executemany(sql, records)
        else:
            await self._pg.copy_records_to_table(table.name, records=records, columns=names)

    async def close(self) -> None:
        if self._db is not None:
            self._db.execute("COMMIT")
            self._db.close()
        elif self._pg is not None:
            for table in ("organizations", "projects", "load_tests", "runs", "channels"):
                await self._pg.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"
                )
            for table in ("events", "deliveries", "delivery_attempts"):
                await self._pg.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"
                )
            # What autovacuum does to a table after a bulk load: statistics, and the
            # visibility map that lets index-only scans skip the table.
            await self._pg.execute("VACUUM ANALYZE")
            await self._pg.close()


async def _accounts(url: str) -> tuple[str, int]:
    engine = create_engine(Settings(database_url=url, secret_key="bench"))
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            token = await accounts.bootstrap(conn)
            from sqlalchemy import select

            owner = (await conn.execute(select(memberships.c.user_id))).scalar_one()
        return token, int(owner)
    finally:
        await engine.dispose()


async def _small_org_token(url: str, org_id: int) -> str:
    from loadbell.domain.roles import Role

    engine = create_engine(Settings(database_url=url, secret_key="bench"))
    try:
        async with engine.begin() as conn:
            return await accounts.service_token(conn, org_id, Role.MEMBER, "bench small org")
    finally:
        await engine.dispose()


def _plan(n: int, rng: random.Random) -> Iterator[tuple[int, int]]:
    """(organization index, deliveries of one event) until ``n`` deliveries."""
    total = 0
    while total < n:
        org = rng.choices(range(len(ORG_SHARES)), ORG_SHARES)[0]
        fan = min(rng.randint(2, CHANNELS_PER_ORG), n - total)
        total += fan
        yield org, fan


async def seed(url: str, n: int, *, seed_value: int = 15, progress: bool = True) -> Seeded:
    """Fill an empty database at ``url`` (migrated here) with about ``n`` deliveries."""
    started = time.perf_counter()
    rng = random.Random(seed_value)
    token, owner = await _accounts(url)
    writer = Writer(url)
    await writer.open()
    sqlite = writer.sqlite
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    # The bootstrap made organization 1, project 1 and user ``owner``; the rest follow.
    org_ids = list(range(1, len(ORG_SHARES) + 1))
    await writer.rows(
        organizations,
        [
            {"id": o, "name": f"Bench org {o}", "created_at": _timestamp(start, sqlite)}
            for o in org_ids[1:]
        ],
    )
    await writer.rows(
        memberships,
        [{"organization_id": o, "user_id": owner, "role": "owner"} for o in org_ids[1:]],
    )
    project_ids: dict[int, list[int]] = {}
    project_rows, test_rows = [], []
    next_project, next_test = 2, 1
    for o in org_ids:
        ids = [1] if o == 1 else []
        while len(ids) < 2:
            ids.append(next_project)
            project_rows.append({"id": next_project, "organization_id": o, "name": f"P{o}"})
            next_project += 1
        project_ids[o] = ids
    for rows in (project_rows,):
        for r in rows:
            r.update(created_at=_timestamp(start, sqlite), updated_at=_timestamp(start, sqlite))
    await writer.rows(projects, project_rows)
    tests_of: dict[int, list[tuple[int, int]]] = {}  # org -> (project, load test)
    for o in org_ids:
        tests_of[o] = []
        for p in project_ids[o]:
            for _ in range(3):
                test_rows.append(
                    {
                        "id": next_test,
                        "project_id": p,
                        "name": f"Test {next_test}",
                        "created_at": _timestamp(start, sqlite),
                        "updated_at": _timestamp(start, sqlite),
                    }
                )
                tests_of[o].append((p, next_test))
                next_test += 1
    await writer.rows(load_tests, test_rows)
    channel_ids: dict[int, list[int]] = {}
    channel_rows = []
    next_channel = 1
    for o in org_ids:
        channel_ids[o] = []
        for i in range(CHANNELS_PER_ORG):
            channel_rows.append(
                {
                    "id": next_channel,
                    "organization_id": o,
                    "project_id": project_ids[o][i % 2] if i >= 3 else None,
                    "kind": "webhook",
                    "name": f"hook {o}.{i}",
                    "enabled": True,
                    "config": json.dumps({"url": "http://127.0.0.1:9/h"}) if sqlite else "{}",
                    "secrets": None,
                    "events": json.dumps([]),
                    "filters": json.dumps({}),
                    "retry": json.dumps({}),
                    "created_at": _timestamp(start, sqlite),
                    "updated_at": _timestamp(start, sqlite),
                }
            )
            channel_ids[o].append(next_channel)
            next_channel += 1
    if not sqlite:  # COPY takes the JSON columns as text in their declared type
        for r in channel_rows:
            r["config"] = json.dumps({"url": "http://127.0.0.1:9/h"})
    await writer.rows(channels, channel_rows)

    d_cols = set(_columns(deliveries))
    seeded = Seeded(token=token, orgs=org_ids, channels=channel_ids, runs={o: [] for o in org_ids})
    run_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    run_id = event_id = delivery_id = attempt_id = 0
    current: dict[int, tuple[int, int, int, int]] = {}  # org -> run, project, test, events left
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    span = (now - start).total_seconds()
    report_every, next_report = max(n // 10, 1), max(n // 10, 1)

    async def flush(final: bool = False) -> None:
        # All tables at once, parents first: PostgreSQL checks foreign keys per COPY.
        if not final and len(delivery_rows) < CHUNK:
            return
        for table, rows in (
            (runs, run_rows),
            (events, event_rows),
            (deliveries, delivery_rows),
            (delivery_attempts, attempt_rows),
        ):
            if rows:
                await writer.rows(table, rows)
                rows.clear()

    for o_index, fan in _plan(n, rng):
        o = org_ids[o_index]
        at = start + timedelta(seconds=span * delivery_id / n)
        stamp = _timestamp(at, sqlite)
        if rng.random() < 0.03:  # an event outside runs (projects, load tests)
            kind, this_run, project, test = rng.choice(OTHER_EVENTS), None, None, None
            project, test = rng.choice(tests_of[o])
        else:
            if o not in current or current[o][3] == 0:
                run_id += 1
                project, test = rng.choice(tests_of[o])
                current[o] = (run_id, project, test, rng.randint(4, 6))
                run_rows.append(
                    {
                        "id": run_id,
                        "load_test_id": test,
                        "project_id": project,
                        "organization_id": o,
                        "status": 7,
                        "result": "passed",
                        "trigger": "api",
                        "user_id": owner,
                        "metrics": "{}",
                        "created_at": stamp,
                        "updated_at": stamp,
                        "started_at": stamp,
                        "ended_at": stamp,
                    }
                )
                if len(seeded.runs[o]) < 50 or rng.random() < 0.001:
                    seeded.runs[o].append(run_id)
            this_run, project, test, left = current[o]
            current[o] = (this_run, project, test, left - 1)
            step = len(RUN_EVENTS) - left
            kind = (
                EventType.TEST_THRESHOLD_FAILED
                if rng.random() < 0.05
                else RUN_EVENTS[max(0, min(step, len(RUN_EVENTS) - 1))]
            )
        event_id += 1
        event_rows.append(
            {
                "id": event_id,
                "type": kind.value,
                "occurred_at": stamp,
                "organization_id": o,
                "project_id": project,
                "load_test_id": test,
                "run_id": this_run,
                "context": json.dumps({"organization": {"id": o}, "run": {"id": this_run}}),
            }
        )
        for channel in rng.sample(channel_ids[o], fan):
            delivery_id += 1
            status = rng.choices(statuses, weights)[0]
            tries = 2 if status == "failed" else (1 if status == "succeeded" else 0)
            if status == "succeeded" and rng.random() > 0.2:
                tries = 0  # most successes keep no attempt rows in this seed
            row = {
                "id": delivery_id,
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "event_id": event_id,
                "channel_id": channel,
                "target": None,
                "order_key": f"{channel}:{this_run}:" if this_run else None,
                "status": status,
                "series": 1,
                "attempts": tries,
                "next_attempt_at": FAR_FUTURE if status == "pending" else at.timestamp(),
                "lease_until": None,
                "lease_owner": None,
                "last_error": "HTTP 500" if status == "failed" else None,
                "last_status_code": 500 if status == "failed" else (200 if tries else None),
                "created_at": stamp,
                "updated_at": stamp,
                # denormalized columns, where the schema has them
                "organization_id": o,
                "event_type": kind.value,
                "run_id": this_run,
            }
            delivery_rows.append({k: v for k, v in row.items() if k in d_cols})
            for number in range(1, tries + 1):
                attempt_id += 1
                attempt_rows.append(
                    {
                        "id": attempt_id,
                        "delivery_id": delivery_id,
                        "series": 1,
                        "number": number,
                        "started_at": stamp,
                        "duration_ms": 12.5,
                        "outcome": "delivered" if status == "succeeded" else "failed",
                        "request_url": "http://127.0.0.1:9/h",
                        "request_headers": json.dumps({"Content-Type": "application/json"}),
                        "response_status": 200 if status == "succeeded" else 500,
                        "response_body": "ok" if status == "succeeded" else "boom",
                        "error": None if status == "succeeded" else "HTTP 500",
                        "worker": "bench",
                    }
                )
        await flush()
        if progress and delivery_id >= next_report:
            print(
                f"  seeded {delivery_id:>9,} deliveries ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
            next_report += report_every
    await flush(final=True)
    await writer.close()
    seeded.small_org_token = await _small_org_token(url, org_ids[-1])
    seeded.deliveries, seeded.attempts, seeded.events = delivery_id, attempt_id, event_id
    seeded.max_delivery_id = delivery_id
    seeded.seconds = time.perf_counter() - started
    if progress:
        print(
            f"  seeded {delivery_id:,} deliveries, {attempt_id:,} attempts, {event_id:,} events,"
            f" {run_id:,} runs in {seeded.seconds:.1f} s",
            flush=True,
        )
    return seeded


@click.command()
@click.option("--n", default=1_000_000, show_default=True, help="Deliveries to seed.")
@click.option("--db", "backend", type=click.Choice(["sqlite", "postgresql"]), default="sqlite")
@click.option("--path", type=click.Path(path_type=Path), help="SQLite file (must not exist).")
@click.option("--url", help="PostgreSQL URL of an empty database.")
def main(n: int, backend: str, path: Path | None, url: str | None) -> None:
    """Seed a database with N deliveries (see the module docstring)."""
    if backend == "sqlite":
        if path is None:
            raise click.UsageError("--path is required for SQLite")
        if path.exists():
            raise click.UsageError(f"{path} exists; give a new file")
        url = f"sqlite+aiosqlite:///{path}"
    elif url is None:
        raise click.UsageError("--url is required for PostgreSQL")
    asyncio.run(seed(url, n))


if __name__ == "__main__":
    main()
