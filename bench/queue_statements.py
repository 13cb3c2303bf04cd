"""CPU per delivery of each statement of the worker's claim and result write, PostgreSQL.

    python -m bench.queue_statements [--n 20000] [--rounds 80]

What ``bench/queue_cost.py`` measures per claim and per write, split by statement: it
stages N deliveries, then runs a claim of 200 and its results' write ``--rounds`` times on
one asyncpg connection, statement by statement as ``store/queue/postgres.py`` runs them
(with no HTTP in between, all succeeded, one channel), and reports this process's CPU and
the server backend's, per delivery, for each. The server's is read from
``/proc/PID/schedstat`` (nanoseconds), so the server must run on this machine.

The statements are the module's own (since D69 one for the claim and one for the write,
each its own transaction); building the parameter rows uses the module's functions too.
What it leaves out: the pool (acquire, release), decoding the claim's channel rows, and
the rare paths (deferrals, disabling, attempt rows written again).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import click

from bench import backlog, databases
from bench.deliveries import PUBLIC_URL, SECRET, _settings
from loadbell.security.secretbox import SecretBox
from loadbell.store.db import create_engine, json_dumps
from loadbell.store.queue import (
    Claimed,
    Completion,
    health_rows,
    hour_rows,
    postgres,
    postgres_statements,
    result_records,
)
from loadbell.values import Outcome, Verdict

_LIMIT = 200


def _on_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


async def _measure(workdir: Path, n: int, rounds: int) -> str:
    async with databases.scratch_database("postgresql", workdir, "stmts") as url:
        settings = _settings(url, workdir, None)
        await databases.seed(settings)
        engine = create_engine(settings)
        await backlog.stage_backlog(
            engine, SecretBox(SECRET), "http://127.0.0.1:9/x", n, PUBLIC_URL
        )
        await engine.dispose()
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return await _rounds(conn, rounds)
        finally:
            await conn.close()


async def _rounds(conn: asyncpg.Connection, rounds: int) -> str:
    await postgres.set_codecs(conn)
    pid = conn.get_server_pid()
    cost: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    last = [time.process_time(), _on_cpu(pid)]

    def mark(name: str | None) -> None:
        now = [time.process_time(), _on_cpu(pid)]
        if name is not None:
            cost[name][0] += now[0] - last[0]
            cost[name][1] += now[1] - last[1]
        last[:] = now

    outcome = Outcome(Verdict.DELIVERED, 204, "", None, None, 1.0, "http://127.0.0.1/x", {"a": "b"})
    count = 0
    for _ in range(rounds):
        mark(None)
        now = time.time()
        until = now + 30
        # One statement each since 2026-12-06 (D69): no BEGIN and COMMIT around them.
        rows = await conn.fetch(
            postgres_statements.CLAIM[(False, False)], now, _LIMIT, until, "bench", [], [], _LIMIT
        )
        mark("claim: one statement")
        if rows[0]["id"] is None:
            break
        claimed = [Claimed._make((*r[: len(Claimed._fields) - 1], until)) for r in rows]
        started = datetime.now(UTC)
        done = [
            Completion(
                d.id,
                d.series,
                1,
                started,
                outcome,
                "succeeded",
                time.time(),
                d.lease_until,
                d.channel_id,
                d.order_key,
            )
            for d in claimed
        ]
        count += len(done)
        stamp = datetime.now(UTC)
        results = result_records(done, stamp=lambda v: v, as_json=json_dumps)
        ended = time.time()
        health, hours = health_rows(done, ended), hour_rows(done, ended)
        completed = postgres.completion_params(results, health, hours, stamp)
        mark("record: parameter rows")
        await conn.fetchrow(postgres_statements.WRITE[True], results, "bench", *completed)
        mark("record: one statement")
    if not count:
        return "nothing was claimed"
    lines = [
        f"{count:,} deliveries claimed and written; load average "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    ]
    total = [0.0, 0.0]
    for name, (client, server) in cost.items():
        total[0] += client
        total[1] += server
        lines.append(
            f"{name:38} client {client / count * 1e6:5.1f} µs, "
            f"server {server / count * 1e6:5.1f} µs per delivery"
        )
    lines.append(
        f"{'all':38} client {total[0] / count * 1e6:5.1f} µs, "
        f"server {total[1] / count * 1e6:5.1f} µs per delivery"
    )
    return "\n".join(lines)


@click.command()
@click.option("--n", "n", default=20_000, show_default=True, help="Backlog size.")
@click.option("--rounds", default=80, show_default=True, help="Claims of 200 and their writes.")
def main(n: int, rounds: int) -> None:
    """CPU per delivery of each claim and result-write statement, client and server."""
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-bench-"))
    try:
        click.echo(asyncio.run(_measure(workdir, n, rounds)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
