"""The worker's instructions per delivery, counted by valgrind: a measure the machine's speed
does not move.

    python -m bench.worker_instructions [--db sqlite|postgresql] [--small 1000] [--large 5000]

``bench.worker_cpu`` times the worker's CPU apart from HTTP, and that time moves with the
machine: on this VM the same drain took from 40 to 90 µs per delivery within one day, so
a change worth a few per cent could not be told from the machine. Counting instructions
under ``valgrind --tool=callgrind`` gives the same figure whatever else the machine does
(on SQLite two counts of the same drain differed by 0.1 %; on PostgreSQL the batches
follow the server's answers, and counts spread by a few per cent), so a change can be
measured by itself, on any machine, before the timed benches say what it does to the rates.
Only what runs inside the event loop is counted (``--toggle-collect=uv_run``).

Each count is one process under valgrind that drains a staged backlog with the answering
sender of ``bench.worker_cpu`` (everything of a delivery but the HTTP exchange), on a
database staged beforehand outside valgrind. The figure is the difference between a drain
of ``--large`` and one of ``--small`` deliveries, divided by the difference: what each
further delivery costs, without the start-up (imports, the first claim, closing) that both
share. On PostgreSQL it counts the worker's process only, not the server's.

Valgrind runs the worker some 50 to 100 times slower, and the worker's batching is paced
by the clock: results are written every ``FLUSH_WAIT`` (50 ms) at the latest, and a
channel's hold is what it finishes in ``HOLD_SECONDS``. So the drain under valgrind
stretches both by ``STRETCH``, or each write would carry a few results instead of the
hundreds it carries on a real machine. Each answer also waits ``ANSWER_DELAY`` seconds,
so that attempts are in flight while the worker claims, as with a real receiver: answered
at once, the worker emptied its slots before each claim, every claim was a first one (the
default hold) and read three candidate rows for each it leased.

``--http`` counts the whole delivery instead: the drain sends each request with the real
sender to ``bench/receiver.py`` (a process of its own, not under valgrind), and the same
pair of counts is made of the raw loop of ``bench/raw.py`` sending the request the channel
renders. The ratio of the two per-request figures is what the drain's ratio to the raw
loop would be if the worker's instructions were all that limited it: the part of the
target that is loadbell's own code, apart from what the machine's other processes (the
receiver, the database server) take from it. The channel's pace under valgrind is its
pace stretched too, so ``FAST_SECONDS`` is stretched with the rest.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import orjson

from bench import backlog, callgrind, databases, loop, raw
from bench.deliveries import PUBLIC_URL, SECRET, _settings, free_port
from bench.drain import drain
from bench.options import db_option
from bench.receiver import ReceiverProcess
from bench.worker_cpu import AnsweringSender
from loadbell.delivery import holds, results
from loadbell.runtime import settle_heap
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import DELIVERY_SUCCEEDED
from loadbell.values import OutboundRequest, Outcome

STRETCH = 100  # the worker's clock-paced batching, stretched for valgrind's pace
ANSWER_DELAY = 0.002  # seconds each answer waits, so attempts overlap the claims
# The raw loop's requests in flight: the worker's concurrency, unless set otherwise.
CONCURRENCY = Settings.model_fields["worker_concurrency"].default


class DelayedAnswers(AnsweringSender):
    async def send(self, request: OutboundRequest, timeout: float) -> Outcome:
        await asyncio.sleep(ANSWER_DELAY)
        return await super().send(request, timeout)


async def _stage(
    backend: str, workdir: Path, label: str, n: int, target: str
) -> tuple[str, dict[str, Any]]:
    """A database with ``n`` pending deliveries to ``target``, kept for the drain; returns
    its URL and the deliveries' event context."""
    async with databases.scratch_database(backend, workdir, label, keep=True) as url:
        settings = _settings(url, workdir, None)
        await databases.seed(settings)
        engine = create_engine(settings)
        try:
            context = await backlog.stage_backlog(engine, SecretBox(SECRET), target, n, PUBLIC_URL)
        finally:
            await engine.dispose()
    return url, context


async def _drain(url: str, n: int, http: bool) -> None:
    """A child's work, under valgrind: drain the staged backlog."""
    results.FLUSH_WAIT *= STRETCH
    holds.HOLD_SECONDS *= STRETCH
    holds.FAST_SECONDS *= STRETCH
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-instructions-"))
    settings = _settings(url, workdir, None)
    engine = create_engine(settings)
    try:
        drained = await drain(
            engine,
            settings,
            SecretBox(SECRET),
            n,
            timeout=3600.0,
            sender=None if http else DelayedAnswers(allow_private_targets=True),
            check_every=1.0,  # each check costs instructions; the drain's end may wait
        )
    finally:
        await engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    if drained.statuses != {DELIVERY_SUCCEEDED: n}:
        raise SystemExit(
            f"every delivery should have succeeded; the backlog ended {drained.statuses}"
        )


async def _raw(target: str, context: dict[str, Any], n: int) -> None:
    """A child's work, under valgrind: the raw loop, ``n`` requests, at the worker's
    concurrency and under its collector settings (as ``raw.warm_up`` sets them)."""
    request = backlog.sample_request(target, context, PUBLIC_URL)
    settle_heap()
    done = await raw.raw_loop(request, n, CONCURRENCY)
    if done.failures:
        raise SystemExit(f"{done.failures} of the raw loop's requests failed")


async def _drop(backend: str, urls: list[str]) -> None:
    if backend == "postgresql":
        for url in urls:
            await databases.drop_database(url)


def _pair(
    children: list[list[str]], sizes: tuple[int, int], out: Path, label: str
) -> tuple[float, dict[int, int]]:
    """Both children, each with its size as ``--n``: the instructions per further
    delivery, and each count."""
    args = [[*child, "--n", str(size)] for child, size in zip(children, sizes, strict=True)]
    return callgrind.per_unit("bench.worker_instructions", args, sizes, out, label)


@click.command()
@db_option()
@click.option("--small", default=1_000, show_default=True, help="Deliveries in the short drain.")
@click.option("--large", default=5_000, show_default=True, help="Deliveries in the long drain.")
@click.option(
    "--http",
    is_flag=True,
    help="Send each delivery to bench/receiver.py, and count the raw loop too.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep callgrind's output files in this folder (for callgrind_annotate).",
)
@click.option("--child-url", default=None, hidden=True)
@click.option("--child-raw", default=None, hidden=True)
@click.option("--n", default=0, hidden=True)
def main(
    backend: str,
    small: int,
    large: int,
    http: bool,
    keep: Path | None,
    child_url: str | None,
    child_raw: str | None,
    n: int,
) -> None:
    """Instructions per delivery of the worker's drain (valgrind)."""
    if child_url is not None:
        loop.run(_drain(child_url, n, http))
        return
    if child_raw is not None:
        target, context_file = child_raw.split(" ", 1)
        loop.run(_raw(target, orjson.loads(Path(context_file).read_bytes()), n))
        return
    callgrind.require_valgrind()
    if not 0 < small < large:
        raise click.UsageError("--small must be positive and less than --large")
    sizes = (small, large)
    receiver = ReceiverProcess(free_port()).start() if http else None
    target = f"{receiver.url}/drain" if receiver else "http://127.0.0.1:9/drain"
    try:
        with tempfile.TemporaryDirectory(prefix="loadbell-instructions-") as tmp:
            workdir = Path(tmp)
            out = keep or workdir
            out.mkdir(parents=True, exist_ok=True)
            urls: list[str] = []
            try:
                for size in sizes:
                    click.echo(f"staging {size:,} deliveries ...", err=True)
                    url, context = loop.run(_stage(backend, workdir, f"instr{size}", size, target))
                    urls.append(url)
                click.echo("draining both under valgrind (minutes) ...", err=True)
                flags = ["--http"] if http else []
                per, counts = _pair(
                    [["--child-url", url, *flags] for url in urls], sizes, out, backend
                )
            finally:
                loop.run(_drop(backend, urls))
            if receiver is not None:
                context_file = workdir / "context.json"
                context_file.write_bytes(orjson.dumps(context))
                click.echo("the raw loop, both sizes, under valgrind ...", err=True)
                raw_per, raw_counts = _pair(
                    [["--child-raw", f"{target} {context_file}"]] * 2, sizes, out, "raw"
                )
    finally:
        if receiver is not None:
            receiver.stop()
    what = "sent to bench/receiver.py" if http else "HTTP answered in-process"
    click.echo(
        f"worker instructions per delivery, {what} ({backend}): "
        f"{per:,.0f} (drains of {small:,} and {large:,}: {counts[small]:,} and "
        f"{counts[large]:,})"
    )
    if receiver is not None:
        click.echo(
            f"raw loop instructions per request: {raw_per:,.0f} (loops of {small:,} and "
            f"{large:,}: {raw_counts[small]:,} and {raw_counts[large]:,}); "
            f"raw / drain: {raw_per / per:.2f}x"
        )


if __name__ == "__main__":
    main()
