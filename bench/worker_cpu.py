"""The worker's own CPU per delivery: a drain with every HTTP exchange answered in-process.

    python -m bench.worker_cpu [--db sqlite|postgresql] [--n 10000] [--rounds 5]

What ``Worker`` spends on a delivery apart from the HTTP request itself: the claim,
preparing and rendering, the sender's bookkeeping (masking, the logged body and headers,
the outcome), the lanes, slots and pacing, metrics and the batched result write. In
``bench.deliveries`` that share is the gap between the drain and the raw loop, but there
it sits on top of aiohttp's and the receiver's CPU, which move with the machine by more
than a change to it does; here it stands alone.

Each round stages ``--n`` deliveries on a fresh database (not timed), then runs one
``Worker`` in this process through ``bench/drain.py`` with :class:`AnsweringSender`, which
logs the request as ``Sender.send`` does (``sender.logged_request``) and answers ``204`` as
``bench/receiver.py`` does, with that receiver's response headers. The figure is the
drain's CPU time of this process per delivery, as ``bench/drain.py`` measures it, from the
worker's start until nothing is pending; on PostgreSQL the server's CPU is not in it.
Compare two checkouts by running the same command with ``PYTHONPATH=<checkout>/src:.`` in
turns.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import click

from bench import backlog, databases, loop
from bench.deliveries import PUBLIC_URL, SECRET, _settings
from bench.drain import drain
from bench.options import db_option
from loadbell.delivery.exchange import logged_headers
from loadbell.delivery.sender import Sender, logged_request
from loadbell.security.secretbox import SecretBox
from loadbell.store.db import create_engine
from loadbell.store.tables import DELIVERY_SUCCEEDED
from loadbell.values import OutboundRequest, Outcome, Verdict

# What bench/receiver.py's 204 carries.
RECEIVER_HEADERS = (
    ("Server", "bench-receiver"),
    ("Date", "Sun, 06 Dec 2026 20:00:00 GMT"),
)
WARM = 2_000  # deliveries drained once, untimed, before the first round


class AnsweringSender(Sender):
    """``Sender.send`` without the network: the same logging of the request around a 204."""

    async def send(self, request: OutboundRequest, timeout: float) -> Outcome:
        started = time.perf_counter()
        logged = logged_request(request)
        await asyncio.sleep(0)  # the request's one turn of the loop, at the least
        return Outcome(
            Verdict.DELIVERED,
            status_code=204,
            body_excerpt="",
            duration_ms=(time.perf_counter() - started) * 1000,
            response_headers=logged_headers(RECEIVER_HEADERS),
            **logged,
        )


async def drain_once(backend: str, workdir: Path, label: str, n: int) -> float:
    """Stage ``n`` deliveries on a fresh database and drain them; CPU µs per delivery."""
    async with databases.scratch_database(backend, workdir, label) as url:
        settings = _settings(url, workdir, None)
        await databases.seed(settings)
        box = SecretBox(SECRET)
        engine = create_engine(settings)
        try:
            await backlog.stage_backlog(engine, box, "http://127.0.0.1:9/drain", n, PUBLIC_URL)
            drained = await drain(
                engine,
                settings,
                box,
                n,
                timeout=max(120.0, n / 50),  # under 50/s, something is wrong
                sender=AnsweringSender(allow_private_targets=True),
            )
        finally:
            await engine.dispose()
    if drained.statuses != {DELIVERY_SUCCEEDED: n}:
        raise RuntimeError(
            f"every delivery should have succeeded; the backlog ended {drained.statuses}"
        )
    return drained.cpu_seconds / n * 1e6


async def _bench(backend: str, n: int, rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="loadbell-worker-cpu-") as tmp:
        workdir = Path(tmp)
        await drain_once(backend, workdir, "warm", min(n, WARM))
        figures = []
        for number in range(1, rounds + 1):
            figures.append(await drain_once(backend, workdir, f"round{number}", n))
            click.echo(f"round {number} of {rounds}: {figures[-1]:.1f} µs", err=True)
    return figures


@click.command()
@db_option()
@click.option("--n", default=10_000, show_default=True, help="Deliveries drained per round.")
@click.option("--rounds", default=5, show_default=True, help="Rounds, each on a fresh database.")
def main(backend: str, n: int, rounds: int) -> None:
    """The worker's CPU per delivery apart from HTTP; prints each round and the median."""
    figures = loop.run(_bench(backend, n, rounds))
    click.echo(
        f"worker CPU per delivery, HTTP answered in-process ({backend}, {n:,} per round): "
        f"median {statistics.median(figures):.1f} µs; rounds "
        + ", ".join(f"{f:.1f}" for f in figures)
    )


if __name__ == "__main__":
    main()
