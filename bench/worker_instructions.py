"""The worker's instructions per delivery, counted by valgrind: a measure the machine's speed
does not move.

    python -m bench.worker_instructions [--db sqlite|postgresql] [--small 1000] [--large 5000]

``bench.worker_cpu`` times the worker's CPU apart from HTTP, and that time moves with the
machine: on this VM the same drain took from 40 to 90 µs per delivery within one day, so
a change worth a few per cent could not be told from the machine. Counting instructions
under ``valgrind --tool=callgrind`` gives the same figure whatever else the machine does
(two counts of the same drain differ by well under 1 %), so a change can be measured by
itself, on any machine, before the timed benches say what it does to the rates.

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
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from bench import backlog, databases, loop
from bench.deliveries import PUBLIC_URL, SECRET, _settings
from bench.drain import drain
from bench.options import db_option
from bench.worker_cpu import AnsweringSender
from loadbell.delivery import holds, results
from loadbell.security.secretbox import SecretBox
from loadbell.store.db import create_engine
from loadbell.store.tables import DELIVERY_SUCCEEDED
from loadbell.values import OutboundRequest, Outcome

STRETCH = 100  # the worker's clock-paced batching, stretched for valgrind's pace
ANSWER_DELAY = 0.002  # seconds each answer waits, so attempts overlap the claims


class DelayedAnswers(AnsweringSender):
    async def send(self, request: OutboundRequest, timeout: float) -> Outcome:
        await asyncio.sleep(ANSWER_DELAY)
        return await super().send(request, timeout)


async def _stage(backend: str, workdir: Path, label: str, n: int) -> str:
    """A database with ``n`` pending deliveries, kept for the drain; returns its URL."""
    async with databases.scratch_database(backend, workdir, label, keep=True) as url:
        settings = _settings(url, workdir, None)
        await databases.seed(settings)
        engine = create_engine(settings)
        try:
            await backlog.stage_backlog(
                engine, SecretBox(SECRET), "http://127.0.0.1:9/drain", n, PUBLIC_URL
            )
        finally:
            await engine.dispose()
    return url


async def _drain(url: str, n: int) -> None:
    """The child's work, under valgrind: drain the staged backlog."""
    results.FLUSH_WAIT *= STRETCH
    holds.HOLD_SECONDS *= STRETCH
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
            sender=DelayedAnswers(allow_private_targets=True),
            check_every=1.0,  # each check costs instructions; the drain's end may wait
        )
    finally:
        await engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    if drained.statuses != {DELIVERY_SUCCEEDED: n}:
        raise SystemExit(
            f"every delivery should have succeeded; the backlog ended {drained.statuses}"
        )


def _counting(url: str, n: int, out: Path) -> subprocess.Popen[str]:
    """Start a drain of ``n`` deliveries under callgrind."""
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.worker_instructions",
        "--child-url",
        url,
        "--n",
        str(n),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _instructions(child: subprocess.Popen[str]) -> int:
    """What a drain started by :func:`_counting` executed, once it ends."""
    _, stderr = child.communicate()
    found = re.search(r"Collected : (\d+)", stderr)
    if child.returncode != 0 or found is None:
        raise click.ClickException(f"the drain under valgrind failed:\n{stderr[-3000:]}")
    return int(found.group(1))


async def _drop(backend: str, urls: list[str]) -> None:
    if backend == "postgresql":
        for url in urls:
            await databases.drop_database(url)


@click.command()
@db_option()
@click.option("--small", default=1_000, show_default=True, help="Deliveries in the short drain.")
@click.option("--large", default=5_000, show_default=True, help="Deliveries in the long drain.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep callgrind's output files in this folder (for callgrind_annotate).",
)
@click.option("--child-url", default=None, hidden=True)
@click.option("--n", default=0, hidden=True)
def main(
    backend: str, small: int, large: int, keep: Path | None, child_url: str | None, n: int
) -> None:
    """Instructions per delivery of the worker's drain apart from HTTP (valgrind)."""
    if child_url is not None:
        loop.run(_drain(child_url, n))
        return
    if shutil.which("valgrind") is None:
        raise click.ClickException(
            "valgrind is not installed: install Debian's valgrind package to run this bench"
        )
    if not 0 < small < large:
        raise click.UsageError("--small must be positive and less than --large")
    sizes = (small, large)
    with tempfile.TemporaryDirectory(prefix="loadbell-instructions-") as tmp:
        workdir = Path(tmp)
        out = keep or workdir
        out.mkdir(parents=True, exist_ok=True)
        urls = []
        try:
            for size in sizes:
                click.echo(f"staging {size:,} deliveries ...", err=True)
                urls.append(loop.run(_stage(backend, workdir, f"instr{size}", size)))
            # Both at once: an instruction count does not depend on what else runs.
            click.echo("draining both under valgrind (minutes) ...", err=True)
            children = [
                _counting(url, size, out / f"callgrind.{backend}.{size}.out")
                for url, size in zip(urls, sizes, strict=True)
            ]
            counts = dict(zip(sizes, [_instructions(c) for c in children], strict=True))
        finally:
            loop.run(_drop(backend, urls))
    per = (counts[large] - counts[small]) / (large - small)
    click.echo(
        f"worker instructions per delivery, HTTP answered in-process ({backend}): "
        f"{per:,.0f} (drains of {small:,} and {large:,}: {counts[small]:,} and "
        f"{counts[large]:,})"
    )


if __name__ == "__main__":
    main()
