"""The cost of reading a channel's ``health`` (store/health.py: ``health_of``), which every
channel read and list does. ``--rate-from deliveries`` times the first design, which
counted the channel's deliveries that ended in the last day (through the
``deliveries.channel_id`` index); the default reads the hourly counts the worker keeps
(``channel_health_hours``, 48 rows as after two days), whatever ``--n``.

    .venv/bin/python -m bench.health_read [--db postgresql] [--n 100000] [--reads 50]

Stages ``--n`` deliveries of one channel (bench/backlog.py), marks them all ended within
the last day (half succeeded, half failed), then times ``--reads`` reads of the channel's
health. Prints the median and p90 per read.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bench import backlog, databases
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.health import health_of
from loadbell.store.tables import (
    DELIVERY_FAILED,
    DELIVERY_SUCCEEDED,
    channel_health_hours,
    channels,
    deliveries,
)

SECRET = "bench-secret"


async def _count_deliveries(conn: AsyncConnection, ids: list[int]) -> None:
    """The first design's rate: count what ended in the last day (no hour table)."""
    since = datetime.now(UTC) - timedelta(hours=24)
    await conn.execute(
        sa.select(deliveries.c.channel_id, deliveries.c.status, sa.func.count())
        .where(deliveries.c.channel_id.in_(ids))
        .where(deliveries.c.status.in_([DELIVERY_SUCCEEDED, DELIVERY_FAILED]))
        .where(deliveries.c.updated_at >= since)
        .group_by(deliveries.c.channel_id, deliveries.c.status)
    )


async def _run(db: str, n: int, reads: int, old: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with databases.scratch_database(db, workdir, "health") as url:
            settings = Settings(
                database_url=url, secret_key=SECRET, secret_key_file=workdir / "unused.key"
            )
            await databases.seed(settings)
            engine = create_engine(settings)
            try:
                await backlog.stage_backlog(
                    engine, SecretBox(SECRET), "http://127.0.0.1:9/", n, "http://x", 1
                )
                async with engine.begin() as conn:
                    await conn.execute(
                        sa.update(deliveries).values(
                            status=sa.case((deliveries.c.id % 2 == 0, "succeeded"), else_="failed")
                        )
                    )
                    hour = int(time.time() // 3600)
                    channel_id = (await conn.execute(sa.select(channels.c.id))).scalar_one()
                    await conn.execute(
                        sa.insert(channel_health_hours),
                        [
                            {
                                "channel_id": channel_id,
                                "hour": hour - h,
                                "succeeded": 100,
                                "failed": 5,
                            }
                            for h in range(48)
                        ],
                    )
                times = []
                async with engine.connect() as conn:
                    rows = list(await conn.execute(sa.select(channels)))
                    for _ in range(reads):
                        started = time.perf_counter()
                        if old:
                            await _count_deliveries(conn, [r.id for r in rows])
                        else:
                            await health_of(conn, rows)
                        times.append(time.perf_counter() - started)
            finally:
                await engine.dispose()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


@click.command()
@click.option("--db", type=click.Choice(["sqlite", "postgresql"]), default="sqlite")
@click.option("--n", default=100_000, show_default=True)
@click.option("--reads", default=50, show_default=True)
@click.option("--rate-from", type=click.Choice(["hours", "deliveries"]), default="hours")
def main(db: str, n: int, reads: int, rate_from: str) -> None:
    median, p90 = asyncio.run(_run(db, n, reads, rate_from == "deliveries"))
    click.echo(
        f"{db}, rate from {rate_from}: health of a channel with {n:,} deliveries ended in "
        "the last day: "
        f"median {median * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms per read"
    )


if __name__ == "__main__":
    main()
