"""A month of traffic on a SQLite file, pruned day by day: the database's size stays flat.

    python -m bench.retention [--days 30] [--runs-per-day 300] [--keep-days 7] [--batch 500]

Each simulated day adds, with that day's timestamps (bulk inserts straight into the
tables), ``--runs-per-day`` finished runs of a realistic shape: a run row with its final
figures; ``test.started`` and ``test.finished`` events with their frozen context (about
1.5 KB of JSON), each delivered to two channels; an attempt per delivery (one in ten
retried twice first), with request headers and a response excerpt of 0.2 to 4 KiB; and
``--reports-per-run`` intermediate reports, each with its ``test.report_intermediate``
event. Then it prunes with ``--keep-days`` of retention as of the end of that day, with
the code the worker runs (``services/retention.py``), and notes the pages in use: SQLite's
``page_count`` minus ``freelist_count`` (pages freed by a prune are reused by the next
day's rows; nothing is VACUUMed), and the file's size after a checkpoint.

The same month is also written without pruning, for comparison. The figure: the size in
use on each day, with and without pruning, and the time each prune took.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import string
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from loadbell.services.retention import prune
from loadbell.settings import Settings
from loadbell.store import accounts, migrate
from loadbell.store.db import create_engine

MB = 1024 * 1024
CHANNELS = 2  # webhooks subscribed to test.started and test.finished
RETRIED = 0.1  # share of deliveries that needed three attempts


def stamp(value: datetime) -> str:
    """As loadbell stores timestamps on SQLite (store/queue/sqlite.py: ``timestamp``)."""
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _text(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + " ", k=size))


def _metrics(rng: random.Random) -> dict[str, object]:
    return {
        "http_reqs": {"count": rng.randint(10_000, 900_000), "rate": rng.uniform(50, 900)},
        "http_req_duration": {
            k: rng.uniform(5, 900) for k in ("avg", "min", "med", "max", "p(90)", "p(95)")
        },
        "http_req_failed": {"rate": rng.uniform(0, 0.05)},
        "vus": {"value": rng.randint(1, 500)},
        "thresholds": [{"metric": "http_req_duration", "expression": "p(95)<500", "ok": True}],
    }


@dataclass
class Day:
    day: int
    used_mb: float  # pages in use, after the prune
    file_mb: float  # the file, after a checkpoint
    removed: int  # rows the prune removed
    prune_s: float


class Month:
    """Writes the simulated days into one SQLite file."""

    def __init__(self, path: Path, runs_per_day: int, reports_per_run: int) -> None:
        self.path = path
        self.runs_per_day = runs_per_day
        self.reports_per_run = reports_per_run
        self.rng = random.Random(11)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        cur = self.db.execute(
            "INSERT INTO load_tests (project_id, name) VALUES (1, 'checkout') RETURNING id"
        )
        self.load_test = cur.fetchone()[0]
        self.channels = [
            self.db.execute(
                "INSERT INTO channels (organization_id, kind, name, enabled, config, events, "
                "filters, retry) VALUES (1, 'webhook', ?, 1, '{}', '[]', '{}', '{}') "
                "RETURNING id",
                (f"hook {i}",),
            ).fetchone()[0]
            for i in range(CHANNELS)
        ]
        self.db.commit()

    def add_day(self, start: datetime) -> None:
        rng = self.rng
        cur = self.db.cursor()
        for n in range(self.runs_per_day):
            began = start + timedelta(seconds=rng.uniform(0, 86_000 - 3600))
            ended = began + timedelta(minutes=rng.uniform(5, 55))
            metrics = _metrics(rng)
            run_id = cur.execute(
                "INSERT INTO runs (load_test_id, project_id, organization_id, status, result, "
                "trigger, user_id, metrics, created_at, updated_at, started_at, ended_at) "
                "VALUES (?, 1, 1, 3, 'passed', 'api', 1, ?, ?, ?, ?, ?) RETURNING id",
                (
                    self.load_test,
                    json.dumps(metrics),
                    stamp(began),
                    stamp(ended),
                    stamp(began),
                    stamp(ended),
                ),
            ).fetchone()[0]
            context = {
                "organization": {"id": 1, "name": "Default Organization"},
                "project": {"id": 1, "name": "Default Project"},
                "load_test": {"id": self.load_test, "name": "checkout"},
                "run": {
                    "id": run_id,
                    "status": 3,
                    "result": "passed",
                    "metrics": metrics,
                    "url": f"http://loadbell.example/runs/{run_id}",
                    "note": _text(rng, 400),
                },
            }
            for kind, at in (("test.started", began), ("test.finished", ended)):
                self._event(cur, kind, at, run_id, context, deliver=True)
            step = (ended - began) / (self.reports_per_run + 1)
            for i in range(self.reports_per_run):
                at = began + step * (i + 1)
                cur.execute(
                    "INSERT INTO run_reports (run_id, at, metrics) VALUES (?, ?, ?)",
                    (run_id, stamp(at), json.dumps(_metrics(rng))),
                )
                self._event(cur, "test.report_intermediate", at, run_id, context, deliver=False)
            if n % 50 == 49:
                self.db.commit()
        self.db.commit()

    def _event(
        self,
        cur: sqlite3.Cursor,
        kind: str,
        at: datetime,
        run_id: int,
        context: dict[str, object],
        *,
        deliver: bool,
    ) -> None:
        rng = self.rng
        event_id = cur.execute(
            "INSERT INTO events (type, occurred_at, organization_id, project_id, load_test_id, "
            "run_id, context) VALUES (?, ?, 1, 1, ?, ?, ?) RETURNING id",
            (kind, stamp(at), self.load_test, run_id, json.dumps(context)),
        ).fetchone()[0]
        if not deliver:
            return
        for channel in self.channels:
            attempts = 3 if rng.random() < RETRIED else 1
            done = at + timedelta(seconds=attempts * 2)
            delivery_id = cur.execute(
                "INSERT INTO deliveries (uuid, event_id, channel_id, order_key, status, series, "
                "attempts, next_attempt_at, last_status_code, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'succeeded', 1, ?, ?, 200, ?, ?) RETURNING id",
                (
                    str(uuid.uuid4()),
                    event_id,
                    channel,
                    f"{channel}:{run_id}:",
                    attempts,
                    at.timestamp(),
                    stamp(at),
                    stamp(done),
                ),
            ).fetchone()[0]
            for number in range(1, attempts + 1):
                last = number == attempts
                cur.execute(
                    "INSERT INTO delivery_attempts (delivery_id, series, number, started_at, "
                    "duration_ms, outcome, request_url, request_headers, response_status, "
                    "response_body, worker) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, 'bench:1')",
                    (
                        delivery_id,
                        number,
                        stamp(at),
                        rng.uniform(5, 400),
                        "delivered" if last else "retry",
                        "https://hooks.example/loadbell",
                        json.dumps(
                            {
                                "Content-Type": "application/json",
                                "X-LoadImpact-ID": str(uuid.uuid4()),
                                "Authorization": "Bearer ****",
                                "User-Agent": "loadbell",
                            }
                        ),
                        200 if last else 503,
                        _text(rng, rng.randint(200, 4096)),
                    ),
                )

    def used_mb(self) -> float:
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page / MB

    def file_mb(self) -> float:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return self.path.stat().st_size / MB

    def rows(self, table: str) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def _month(
    path: Path, days: int, runs: int, reports: int, keep: int | None, batch: int
) -> list[Day]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}")
    engine = create_engine(settings, checkpoints=False)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await accounts.bootstrap(conn)
        month = Month(path, runs, reports)
        first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first -= timedelta(days=days)
        out = []
        for d in range(days):
            start = first + timedelta(days=d)
            month.add_day(start)
            removed, took = 0, 0.0
            if keep is not None:
                began = time.perf_counter()
                cutoff = start + timedelta(days=1) - timedelta(days=keep)
                removed = (await prune(engine, cutoff, batch=batch, pause=0)).total
                took = time.perf_counter() - began
            out.append(Day(d + 1, month.used_mb(), month.file_mb(), removed, took))
            click.echo(
                f"  day {d + 1:>2}: in use {out[-1].used_mb:7.1f} MB, file "
                f"{out[-1].file_mb:7.1f} MB, pruned {removed:>6} rows in {took:5.2f} s",
                err=True,
            )
        tables = ("runs", "events", "deliveries", "delivery_attempts", "run_reports")
        click.echo("  rows: " + ", ".join(f"{t} {month.rows(t)}" for t in tables), err=True)
        month.db.close()
        return out
    finally:
        await engine.dispose()


@click.command()
@click.option("--days", default=30, show_default=True, help="Days of traffic simulated.")
@click.option("--runs-per-day", default=300, show_default=True)
@click.option("--reports-per-run", default=10, show_default=True)
@click.option("--keep-days", default=7, show_default=True, help="The retention, in days.")
@click.option("--batch", default=500, show_default=True, help="Rows per prune transaction.")
def main(days: int, runs_per_day: int, reports_per_run: int, keep_days: int, batch: int) -> None:
    """Print the database's size day by day, pruned and not."""
    with tempfile.TemporaryDirectory() as tmp:
        click.echo(f"without pruning ({runs_per_day} runs a day):", err=True)
        grown = asyncio.run(
            _month(Path(tmp) / "grown.db", days, runs_per_day, reports_per_run, None, batch)
        )
        click.echo(f"pruned with {keep_days} days of retention:", err=True)
        pruned = asyncio.run(
            _month(Path(tmp) / "pruned.db", days, runs_per_day, reports_per_run, keep_days, batch)
        )
    click.echo("| day | in use, not pruned | in use, pruned | file, pruned | prune |")
    click.echo("| --: | --: | --: | --: | --: |")
    for g, p in zip(grown, pruned, strict=True):
        if p.day in (1, keep_days, keep_days + 1) or p.day % 5 == 0 or p.day == days:
            click.echo(
                f"| {p.day} | {g.used_mb:.1f} MB | {p.used_mb:.1f} MB | {p.file_mb:.1f} MB | "
                f"{p.removed} rows, {p.prune_s:.2f} s |"
            )
    steady = [p.used_mb for p in pruned[keep_days:]]
    if steady:
        click.echo(
            f"\nafter day {keep_days}: in use {min(steady):.1f} to {max(steady):.1f} MB pruned; "
            f"{grown[-1].used_mb:.1f} MB after {days} days without pruning"
        )


if __name__ == "__main__":
    main()
