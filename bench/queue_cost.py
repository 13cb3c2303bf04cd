"""CPU per delivery of the worker's claim and result write, client and database server.

    python -m bench.queue_cost [--n 20000] [--rounds 80] [--db postgresql|sqlite]

Stages N deliveries (bench/backlog.py), then claims 200 at a time and writes each batch's
results as succeeded, ``--rounds`` times, with no HTTP in between. Reports CPU time per
delivery: this process's (the client side of ``store/queue``) and, on PostgreSQL, that of
the server process serving this database (read from /proc, so the server must run on
this machine; in nanoseconds where the kernel keeps schedstat). CPU time moves much less
with a busy machine than rates do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from bench import backlog, databases
from bench.deliveries import PUBLIC_URL, SECRET, _settings
from loadbell.security.secretbox import SecretBox
from loadbell.store.db import create_engine
from loadbell.store.queue import Completion, queue_for
from loadbell.values import Outcome, Verdict


def _server_cpu(pids: list[int]) -> float:
    """CPU seconds the given processes have used: their time on a CPU in nanoseconds
    (/proc/PID/schedstat), or user + system in clock ticks (/proc/PID/stat) where the
    kernel keeps no schedstat. Ticks are 10 ms, coarse beside a statement of 1-5 ms."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def _measure(backend: str, workdir: Path, n: int, rounds: int) -> str:
    async with databases.scratch_database(backend, workdir, "queue") as url:
        settings = _settings(url, workdir, None)
        await databases.seed(settings)
        engine = create_engine(settings)
        await backlog.stage_backlog(
            engine, SecretBox(SECRET), "http://127.0.0.1:9/x", n, PUBLIC_URL
        )
        await engine.dispose()
        queue = queue_for(settings)
        await queue.open()
        await queue.claim(owner="bench", limit=1, lease_seconds=30)  # opens the connection
        pids: list[int] = []
        if backend == "postgresql":
            import asyncpg

            admin = await asyncpg.connect(url.replace("+asyncpg", ""))
            pids = [
                r[0]
                for r in await admin.fetch(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]
            await admin.close()
        outcome = Outcome(
            Verdict.DELIVERED, 204, "", None, None, 1.0, "http://127.0.0.1/x", {"a": "b"}
        )
        claim_cpu = record_cpu = claim_srv = record_srv = 0.0
        count = 0
        for _ in range(rounds):
            c0, s0 = time.process_time(), _server_cpu(pids)
            batch = await queue.claim(owner="bench", limit=200, lease_seconds=30)
            c1, s1 = time.process_time(), _server_cpu(pids)
            now = datetime.now(UTC)
            done = [
                Completion(
                    d.id,
                    d.series,
                    1,
                    now,
                    outcome,
                    "succeeded",
                    time.time(),
                    d.lease_until,
                    d.channel_id,
                    d.order_key,
                )
                for d in batch.deliveries
            ]
            await queue.record(done, [], "bench")
            c2, s2 = time.process_time(), _server_cpu(pids)
            claim_cpu += c1 - c0
            record_cpu += c2 - c1
            claim_srv += s1 - s0
            record_srv += s2 - s1
            count += len(batch.deliveries)
        await queue.close()
    if not count:
        return "nothing was claimed"

    def us(seconds: float) -> str:
        return f"{seconds / count * 1e6:.1f}"

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{count:,} deliveries claimed and written ({backend}); load average {load}\n"
        f"claim:  client {us(claim_cpu)} µs, server {us(claim_srv)} µs per delivery\n"
        f"record: client {us(record_cpu)} µs, server {us(record_srv)} µs per delivery"
    )


@click.command()
@click.option("--n", "n", default=20_000, show_default=True, help="Backlog size.")
@click.option("--rounds", default=80, show_default=True, help="Claims of 200 and their writes.")
@click.option(
    "--db",
    "backend",
    type=click.Choice(["sqlite", "postgresql"]),
    default="postgresql",
    show_default=True,
)
def main(n: int, rounds: int, backend: str) -> None:
    """CPU per delivery of claims and result writes, client and server."""
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-bench-"))
    try:
        click.echo(asyncio.run(_measure(backend, workdir, n, rounds)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
