"""The cost of one result write (``WorkQueue.record``): the statement batch the worker runs
for every 256 results, timed alone, so that a change to it (channel health, issue 12) is
measured without the noise of HTTP and rendering.

    .venv/bin/python -m bench.result_writes [--db postgresql] [--n 20000] [--batch 256]
        [--outcome succeeded|failed] [--channels 1]

A backlog of ``--n`` deliveries is staged (bench/backlog.py), then claimed and recorded in
batches of ``--batch`` until none is left; only ``record`` is timed. ``failed`` records
every result as failed for good (the health write then also reads the channel's count to
check ``auto_disable``, which is never reached here). Prints the median and p90 wall time
per batch and per result, and this process's CPU time per result (the database's own
work is in the wall time on SQLite, in the server process on PostgreSQL). The same file
runs against a checkout without health (``PYTHONPATH=<that checkout>/src``) for the ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bench import backlog, databases
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.queue import Completion, queue_for
from loadbell.values import Outcome, Verdict

SECRET = "bench-secret"


def _completion(item: Any, status: str) -> Completion:
    verdict = Verdict.DELIVERED if status == "succeeded" else Verdict.FAILED
    fields: dict[str, Any] = {
        "delivery_id": item.id,
        "series": item.series,
        "attempt_number": 1,
        "started_at": datetime.now(UTC),
        "outcome": Outcome(verdict, status_code=204 if status == "succeeded" else 500),
        "status": status,
        "next_attempt_at": time.time(),
        "lease_until": item.lease_until,
        "channel_id": item.channel_id,
        "order_key": item.order_key,
    }
    if "auto_disable" in Completion._fields:  # a checkout with channel health
        from loadbell.domain.health import AutoDisable

        fields["target"] = item.target
        fields["auto_disable"] = AutoDisable(10**9, 24.0)  # checked, never reached
    return Completion(**fields)


async def _run(db: str, n: int, batch: int, outcome: str, channels: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with databases.scratch_database(db, workdir, "writes") as url:
            settings = Settings(
                database_url=url,
                secret_key=SECRET,
                secret_key_file=workdir / "unused.key",
                allow_private_targets=True,
            )
            await databases.seed(settings)
            engine = create_engine(settings)
            try:
                await backlog.stage_backlog(
                    engine, SecretBox(SECRET), "http://127.0.0.1:9/", n, "http://x", channels
                )
            finally:
                await engine.dispose()
            queue = queue_for(settings)
            await queue.open()
            walls: list[float] = []
            cpu = 0.0
            written = 0
            try:
                while True:
                    claim = await queue.claim(owner="bench", limit=batch, lease_seconds=60)
                    if not claim.deliveries:
                        break
                    done = [_completion(d, outcome) for d in claim.deliveries]
                    c0, w0 = time.process_time(), time.perf_counter()
                    await queue.record(done, [], "bench")
                    walls.append(time.perf_counter() - w0)
                    cpu += time.process_time() - c0
                    written += len(done)
            finally:
                await queue.close()
    walls.sort()
    per = statistics.median(walls) / batch
    return {
        "batches": len(walls),
        "results": written,
        "median_ms": statistics.median(walls) * 1000,
        "p90_ms": walls[int(len(walls) * 0.9)] * 1000,
        "median_us_per_result": per * 1e6,
        "cpu_us_per_result": cpu / written * 1e6,
    }


@click.command()
@click.option("--db", type=click.Choice(["sqlite", "postgresql"]), default="sqlite")
@click.option("--n", default=20_000, show_default=True)
@click.option("--batch", default=256, show_default=True)
@click.option("--outcome", type=click.Choice(["succeeded", "failed"]), default="succeeded")
@click.option("--channels", default=1, show_default=True)
def main(db: str, n: int, batch: int, outcome: str, channels: int) -> None:
    r = asyncio.run(_run(db, n, batch, outcome, channels))
    click.echo(
        f"{db} {outcome} x{channels} channels: {r['results']:,.0f} results in "
        f"{r['batches']:.0f} batches; per batch median {r['median_ms']:.2f} ms, "
        f"p90 {r['p90_ms']:.2f} ms; per result {r['median_us_per_result']:.1f} µs wall, "
        f"{r['cpu_us_per_result']:.1f} µs CPU"
    )


if __name__ == "__main__":
    main()
