"""What one scrape of /metrics costs the database: the backlog statement (pending, due, the
oldest due delivery's age) over a staged backlog of N pending deliveries, on SQLite (which
runs it on the event loop's thread) and on PostgreSQL (docs/benchmarks.md). And what
admission's count of due deliveries costs (``count_due``, capped at the default
``LOADBELL_MAX_DUE_BACKLOG`` + 1, every 0.25 s in each serve process).

Run: python -m bench.backlog_query [N] [postgresql://postgres@127.0.0.1:5432/DB]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.backlog import stage_backlog
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import accounts, migrate
from loadbell.store.backlog import count_due, read_backlog
from loadbell.store.db import create_engine

ROUNDS = 15
CAP = Settings.model_fields["max_due_backlog"].default + 1


async def measure(url: str, n: int) -> str:
    engine = create_engine(Settings(database_url=url, secret_key="bench"))
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await accounts.bootstrap(conn)
        await stage_backlog(engine, SecretBox("bench"), "http://127.0.0.1:9/h", n, "http://x")
        took = []
        for _ in range(ROUNDS):
            async with engine.connect() as conn:
                started = time.perf_counter()
                pending, _due, _age = await read_backlog(conn)
                took.append(time.perf_counter() - started)
        assert pending == n, (pending, n)
        counted = []
        for _ in range(ROUNDS):
            async with engine.connect() as conn:
                started = time.perf_counter()
                due = await count_due(conn, CAP)
                counted.append(time.perf_counter() - started)
        assert due == min(n, CAP), (due, n)
        database = url.split(":")[0]
        median, worst = statistics.median(took) * 1e3, max(took) * 1e3
        c_median, c_worst = statistics.median(counted) * 1e3, max(counted) * 1e3
        return (
            f"{database:<10} {n:>8,} pending: median {median:.1f} ms, max {worst:.1f} ms; "
            f"count_due up to {CAP:,}: median {c_median:.2f} ms, max {c_worst:.2f} ms"
        )
    finally:
        await engine.dispose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        print(asyncio.run(measure(f"sqlite:///{Path(tmp) / 'backlog.db'}", n)))
    if len(sys.argv) > 2:  # an empty PostgreSQL database the bench may fill
        print(asyncio.run(measure(sys.argv[2], n)))


if __name__ == "__main__":
    main()
