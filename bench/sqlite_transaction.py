"""CPU of one SQLite write transaction around a trivial statement, two ways, interleaved in
one process: ``store/db.py: transaction`` (BEGIN IMMEDIATE and COMMIT on the ``sqlite3``
connection) and SQLAlchemy's ``conn.begin()`` on a pooled connection, as ``transaction`` did
before (docs/decisions.md, D63). Run: python -m bench.sqlite_transaction"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench import databases, loop
from bench.deliveries import SECRET
from loadbell.settings import Settings
from loadbell.store.db import create_engine, transaction
from loadbell.store.inline_sql import sqlite3_of

# A statement that SQLite compiles and runs without writing a row.
NOTHING = "INSERT INTO run_status_changes (run_id, status) SELECT 1, 2 WHERE 0"


@contextlib.asynccontextmanager
async def through_sqlalchemy(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    conn = await engine.connect()
    try:
        async with conn.begin():
            yield conn
    finally:
        await conn.close()


Way = Callable[[AsyncEngine], AbstractAsyncContextManager[AsyncConnection]]


async def per_transaction(engine: AsyncEngine, way: Way, count: int) -> float:
    """Microseconds of this thread's CPU per transaction."""
    started = time.thread_time()
    for _ in range(count):
        async with way(engine) as conn:
            raw = sqlite3_of(conn)
            assert raw is not None
            raw.execute(NOTHING)
    return (time.thread_time() - started) / count * 1e6


async def main(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with databases.scratch_database("sqlite", work, "tx") as url:
            settings = Settings(
                database_url=url, secret_key=SECRET, secret_key_file=work / "unused.key"
            )  # type: ignore[call-arg]
            engine = create_engine(settings)
            ways: dict[str, Way] = {
                "transaction()": transaction,
                "conn.begin()": through_sqlalchemy,
            }
            figures: dict[str, list[float]] = {name: [] for name in ways}
            try:
                for _ in range(rounds):
                    for name, way in ways.items():
                        figures[name].append(await per_transaction(engine, way, count))
            finally:
                await engine.dispose()
    for name, values in figures.items():
        print(
            f"{name:15s} min {min(values):6.1f} µs, median {statistics.median(values):6.1f} µs "
            f"per transaction ({rounds} rounds of {count})"
        )


@click.command()
@click.option("--count", default=1000, show_default=True, help="Transactions per round.")
@click.option("--rounds", default=8, show_default=True, help="Rounds of each way, in turn.")
def cli(count: int, rounds: int) -> None:
    """CPU per SQLite write transaction: transaction() against SQLAlchemy's begin()."""
    loop.run(main(count, rounds))


if __name__ == "__main__":
    cli()
