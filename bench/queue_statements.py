"""CPU per delivery of each statement of the worker's claim and result write, PostgreSQL.

    python -m bench.queue_statements [--n 20000] [--rounds 80]

What ``bench/queue_cost.py`` measures per claim and per write, split by statement: it
stages N deliveries, then runs a claim of 200 and its results' write ``--rounds`` times on
one asyncpg connection, statement by statement as ``store/queue/postgres.py`` runs them
(with no HTTP in between, all succeeded, one channel), and reports this process's CPU and
the server backend's, per delivery, for each. The server's is read from
``/proc/PID/schedstat`` (nanoseconds), so the server must run on this machine.

The statements are the module's own; the steps between them (``choose``, building the
parameter rows) are the module's functions too. What it leaves out: the pool (acquire,
release), and the rare paths (deferrals, disabling, attempt rows written again).
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
    choose,
    health_rows,
    hour_rows,
    postgres,
    result_rows,
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
    await postgres._codecs(conn)
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
        async with conn.transaction():
            now = time.time()
            rows = await conn.fetch(postgres.DUE[(False, False)], now, _LIMIT)
            mark("claim: due rows, locked")
            chosen, _full, _left = choose(
                rows, limit=_LIMIT, channel_of=2, channel_cap=None, channel_room=None
            )
            until = now + 30
            await conn.execute(postgres.LEASE, until, "bench", [r["id"] for r in chosen])
            mark("claim: lease")
            claimed = [Claimed._make((*r[:-1], until)) for r in chosen]
            ids = sorted({c.channel_id for c in claimed})
            await conn.fetch(postgres.CHANNELS, ids)
            await conn.fetch(postgres.OVERRIDES, ids)
            mark("claim: channels, overrides")
        mark("claim: begin, commit")
        if not claimed:
            break
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
        updates, attempts = result_rows(
            done, "bench", now=stamp, stamp=lambda v: v, as_json=json_dumps
        )
        mark("record: parameter rows")
        async with conn.transaction():
            columns = list(zip(*attempts, strict=True))
            await conn.fetch(postgres.INSERT_ATTEMPTS, *columns[:14], "bench")
            mark("record: attempt rows")
            columns = list(zip(*updates, strict=True))
            del columns[5]
            ended = time.time()
            health, hours = health_rows(done, ended), hour_rows(done, ended)
            together = getattr(postgres, "COMPLETE_WITH_HEALTH", None)  # since 2026-12-06
            if together is not None:
                rows = (*zip(*health, strict=True), *zip(*hours, strict=True))
                arrays = [list(c) for c in rows]
                followers = await conn.fetchval(together, *columns, stamp, *arrays)
                mark("record: deliveries, health (and followers)")
            else:
                followers = await conn.fetchval(postgres.COMPLETE, *columns, stamp)
                mark("record: deliveries (and followers)")
            if followers is None:  # a COMPLETE that does not answer it (before 2026-12-06)
                ended_keys = sorted({c.order_key for c in done if c.order_key})
                followers = bool(await conn.fetch(postgres.FOLLOWER, ended_keys))
                mark("record: followers")
            if together is None:
                await conn.executemany(postgres.HEALTH, health)
                await conn.executemany(postgres.HOURS, hours)
                mark("record: health")
            if followers:
                await conn.execute(postgres.SHARE)
                mark("record: notify")
        mark("record: begin, commit")
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
