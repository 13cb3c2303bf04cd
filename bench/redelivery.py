"""Bulk redelivery of a large failed backlog: how long the event loop waits.

    python -m bench.redelivery [--n 33000] [--db sqlite|postgresql] [--chunk 1000]

Stages ``--n`` deliveries (``bench/backlog.py``), marks them failed, then restarts them as
``POST /deliveries/redeliver-failed`` does (``store/redelivery.py``, one transaction)
while a task notes every turn of the event loop. It prints the time the restart took and
the longest gap between two turns: on SQLite the statements run on the loop's thread, so
that gap is how long every request and the worker of the process would have waited.
``--chunk`` overrides ``redelivery.CHUNK`` (a large value: one statement, as before).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import click
import sqlalchemy as sa

from bench import databases, loop, options
from bench.backlog import stage_backlog
from bench.deliveries import SECRET, _settings
from loadbell.security.secretbox import SecretBox
from loadbell.store import redelivery, tables
from loadbell.store.db import create_engine


async def _bench(backend: str, n: int, chunk: int) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with databases.scratch_database(backend, workdir, "redelivery") as url:
            settings = _settings(url, workdir, None)
            await databases.seed(settings)
            engine = create_engine(settings)
            try:
                box = SecretBox(SECRET)
                await stage_backlog(engine, box, "http://127.0.0.1:9/", n, settings.base_url)
                async with engine.begin() as conn:
                    await conn.execute(sa.update(tables.deliveries).values(status="failed"))
                redelivery.CHUNK = chunk
                gaps: list[float] = []

                async def turns() -> None:
                    last = time.perf_counter()
                    while True:
                        await asyncio.sleep(0)
                        now = time.perf_counter()
                        gaps.append(now - last)
                        last = now

                watch = asyncio.create_task(turns())
                await asyncio.sleep(0.01)
                started = time.perf_counter()
                async with engine.begin() as conn:
                    failed = redelivery.FailedFilter(organization_id=1)
                    ids = await redelivery.restart_failed(conn, failed)
                took = time.perf_counter() - started
                watch.cancel()
                return len(ids), took, max(gaps)
            finally:
                await engine.dispose()


@click.command()
@click.option("--n", default=33_000, show_default=True, help="Failed deliveries to restart.")
@options.db_option()
@click.option(
    "--chunk",
    default=redelivery.CHUNK,
    show_default=True,
    help="Deliveries per statement (redelivery.CHUNK).",
)
def main(n: int, backend: str, chunk: int) -> None:
    """Time a bulk redelivery and the longest wait of the event loop during it."""
    count, took, gap = loop.run(_bench(backend, n, chunk))
    click.echo(
        f"{backend}: {count:,} restarted, {chunk:,} per statement, in {took * 1000:.0f} ms; "
        f"longest wait of the event loop {gap * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
