"""Scale-out: several ``loadbell worker`` processes drain one backlog; who did how much.

    python -m bench.workers [--n 20000] [--workers 2] [--db postgresql|sqlite]
                            [--channels 1] [--write-docs]

1. The workers start on an empty, migrated database and the bench waits until each has
   written its heartbeat (so none starts late).
2. N deliveries are staged in one transaction, which ends with ``NOTIFY loadbell_outbox``
   as the API's does; the clock runs from that commit until nothing is pending.
3. Each worker's share is counted from the attempt log (``delivery_attempts.worker``).
4. Raw loop: N bare aiohttp POSTs of the request the webhook channel renders, at one
   worker's concurrency (the ceiling, as in ``bench.deliveries``), in the same run.

The receiver is a separate process (``bench/receiver.py``), as in ``bench.deliveries``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import backlog, databases, loop, options, report
from bench.deliveries import PUBLIC_URL, SECRET, _settings, free_port
from bench.latency import settings_env
from bench.raw import WARM_UP_REQUESTS, RawResult, raw_loop, warm_up
from bench.receiver import ROOT, ReceiverProcess
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.outbox import NOTIFY_CHANNEL
from loadbell.store.tables import delivery_attempts, workers

_CHECK_EVERY = 0.02  # seconds between "anything still pending?" reads


@dataclass(frozen=True)
class ScaleOutResult:
    command: str
    machine: report.Machine
    settings: Settings
    raw: RawResult
    n: int
    workers: int
    seconds: float
    timed_out: bool
    shares: dict[str, int]  # worker name -> attempts it made
    load_after: tuple[float, float, float]

    @property
    def per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.per_second / self.raw.per_second if self.raw.per_second else 0.0

    def share_text(self) -> str:
        total = sum(self.shares.values()) or 1
        parts = sorted(self.shares.values(), reverse=True)
        parts += [0] * (self.workers - len(parts))  # a worker that made no attempt at all
        return " / ".join(f"{p:,} ({p / total:.0%})" for p in parts)

    def rows(self) -> list[tuple[str, str, str]]:
        total = sum(self.shares.values()) or 1
        fractions = [self.shares.get(k, 0) / total for k in self.shares]
        fractions += [0.0] * (self.workers - len(fractions))
        low = 0.35 if self.workers == 2 else 0.0
        high = 0.65 if self.workers == 2 else 1.0
        fair = "met" if all(low <= f <= high for f in fractions) else "**not met**"
        return [
            (
                f"Raw aiohttp POST loop, {self.settings.worker_concurrency} in flight",
                f"{self.raw.per_second:,.0f} req/s",
                f"{self.raw.requests:,} in {self.raw.seconds:.2f} s",
            ),
            (
                f"{self.workers} `loadbell worker` processes drain {self.n:,} deliveries",
                f"{self.per_second:,.0f} deliveries/s",
                f"{self.seconds:.2f} s{' (TIMED OUT)' if self.timed_out else ''}",
            ),
            ("Drain / raw loop", f"{self.ratio:.2f}×", "all workers together"),
            (
                "Attempts per worker",
                self.share_text(),
                f"target 35–65 % each (2 workers): {fair}" if self.workers == 2 else "",
            ),
        ]

    def table(self) -> str:
        rows = [("Measure", "Value", "Notes"), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def markdown(self) -> str:
        m = self.machine
        s = self.settings
        return "\n".join(
            [
                f"### {self.workers} workers on {m.database}",
                "",
                *report.measured_with(
                    self.command, m, after_load=f", at the end {report.loads(self.load_after)}."
                ),
                f"- Settings per worker: {report.worker_settings(s)}.",
                "",
                "| Measure | Value | Notes |",
                "|---|---|---|",
                *(f"| {a} | {b} | {c} |" for a, b, c in self.rows()),
            ]
        )


@click.command()
@click.option("--n", "n", default=20_000, show_default=True, help="Backlog size.")
@click.option("--workers", "count", default=2, show_default=True, help="Worker processes.")
@options.db_option(default="postgresql")
@click.option("--channels", default=1, show_default=True, help="Webhook channels.")
@report.docs_options
def main(
    n: int, count: int, backend: str, channels: int, write_docs: bool, docs_path: Path
) -> None:
    """Drain one backlog with several worker processes; report each one's share."""
    if n < 2 or count < 1:
        raise click.UsageError("--n must be at least 2 and --workers at least 1")
    command = f"python -m bench.workers --n {n} --workers {count} --db {backend}"
    if channels != 1:
        command += f" --channels {channels}"
    if write_docs:
        command += " --write-docs"
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-bench-"))
    receiver = ReceiverProcess(free_port()).start()
    try:
        bench = _bench(
            backend, workdir, receiver, n=n, count=count, channels=channels, command=command
        )
        result = loop.run(bench)  # the raw loop runs on it too, as in bench.deliveries
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(result.table())
    if write_docs:
        report.write_block(f"workers:{backend}", result.markdown(), docs_path)
        click.echo(f"\nwritten to {docs_path}")


async def _bench(
    backend: str,
    workdir: Path,
    receiver: ReceiverProcess,
    *,
    n: int,
    count: int,
    channels: int,
    command: str,
) -> ScaleOutResult:
    async with databases.scratch_database(backend, workdir, "workers") as url:
        settings = _settings(url, workdir, None)
        machine = report.Machine.describe(await databases.server_version(settings))
        await databases.seed(settings)
        box = SecretBox(SECRET)
        engine = create_engine(settings)
        procs: list[asyncio.subprocess.Process] = []
        try:
            env = settings_env(settings)
            for i in range(count):
                log = (workdir / f"worker{i}.log").open("wb")
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        *("-m", "loadbell.cli", "worker"),
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                )
            await _wait_for_workers(engine, count, procs, workdir)

            click.echo(f"{count} workers drain {n:,} deliveries ...", err=True)
            context = await backlog.stage_backlog(
                engine, box, f"{receiver.url}/drain", n, PUBLIC_URL, channels
            )
            started = time.perf_counter()
            if backend == "postgresql":
                async with engine.begin() as conn:
                    await conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")
            probe = backlog.PendingProbe(engine)
            timed_out = False
            try:
                while await probe.any():
                    if time.perf_counter() - started > max(120.0, n / 50):
                        timed_out = True
                        break
                    await asyncio.sleep(_CHECK_EVERY)
            finally:
                probe.close()
            seconds = time.perf_counter() - started
            load_after = os.getloadavg()
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                await proc.wait()
        # The ceiling, with the workers gone: the same request, as many in flight as one has.
        click.echo(f"raw loop: {n:,} POSTs ...", err=True)
        request = backlog.sample_request(f"{receiver.url}/drain", context, PUBLIC_URL)
        await warm_up(request, settings.worker_concurrency, min(n, WARM_UP_REQUESTS))
        raw = await raw_loop(request, n, settings.worker_concurrency)
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(delivery_attempts.c.worker, sa.func.count()).group_by(
                    delivery_attempts.c.worker
                )
            )
            shares = {str(w): int(c) for w, c in rows}
        await engine.dispose()
    return ScaleOutResult(
        command=command,
        machine=machine,
        settings=settings,
        raw=raw,
        n=n,
        workers=count,
        seconds=seconds,
        timed_out=timed_out,
        shares=shares,
        load_after=load_after,
    )


async def _wait_for_workers(
    engine: AsyncEngine,
    count: int,
    procs: list[asyncio.subprocess.Process],
    workdir: Path,
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.returncode is not None for p in procs):
            break
        async with engine.connect() as conn:
            alive = (
                await conn.execute(sa.select(sa.func.count()).select_from(workers))
            ).scalar_one()
        if alive >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the workers did not start:\n{_logs(workdir)}")


def _logs(workdir: Path) -> str:
    return "\n".join(p.read_text()[-2000:] for p in sorted(workdir.glob("worker*.log")))


if __name__ == "__main__":
    main()
