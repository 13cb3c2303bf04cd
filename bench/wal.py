"""The SQLite write-ahead log under steady traffic: how large the ``-wal`` file grows, and how
soon it is truncated once the traffic stops.

    python -m bench.wal [--rate 200] [--seconds 600] [--idle 90] [--readers 2]
                        [--slow-read 0] [--synchronous NORMAL] [--every 10]

``loadbell serve`` runs as a child process on a SQLite file in a temporary directory, with its
in-process worker. An open-loop client PATCHes runs to Running at ``--rate`` per second (as
``bench/latency.py`` does); a channel subscribed to ``test.started`` sends each one to the
receiver, so every event is an API write, a delivery, an attempt and a result write.
Meanwhile ``--readers`` clients each ask for the newest page of ``GET /deliveries`` and of
``GET /runs`` every second, as a dashboard left open would, during the load and after it.
``--slow-read N`` also holds one read transaction open for N seconds halfway through the
load, as a slow query on a large database does.

The ``-wal`` file's size is sampled every second. The figures: the largest size during the
load, the size over time, and how long after the last event arrived the file was truncated
to 0 bytes (sampling goes on for ``--idle`` seconds with the readers still polling). The
latency and response times are printed for context: each GET runs on the server's event
loop, so with readers they include the time events waited for the GETs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click

from bench import databases, loop, options
from bench.deliveries import PUBLIC_URL, SECRET, free_port
from bench.latency import LatencyResult, ServerProcess, measure_latency, prepare_runs
from bench.receiver import ReceiverProcess
from bench.report import percentile
from loadbell.settings import Settings
from loadbell.store.db import sqlite_path

SAMPLE_EVERY = 1.0  # seconds between two looks at the -wal file
READER_PAUSE = 1.0  # seconds a polling reader waits between two rounds of GETs
WARMUP = 1.0  # seconds of events not counted in the latency figures
BOUND_MB = 64.0  # the -wal file must stay under this during the load
TRUNCATED_WITHIN = 60.0  # seconds after the load by which the file must be truncated
MB = 1024 * 1024


@dataclass
class WalSamples:
    """``(seconds since the load began, bytes)`` every ``SAMPLE_EVERY`` seconds."""

    path: Path
    started: float = field(default_factory=time.monotonic)
    points: list[tuple[float, int]] = field(default_factory=list)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:  # SQLite deletes the log when the last connection closes
            return 0

    async def run(self) -> None:
        tick = 0
        while True:
            self.points.append((time.monotonic() - self.started, self.size()))
            tick += 1
            await asyncio.sleep(max(0.0, self.started + tick * SAMPLE_EVERY - time.monotonic()))


READS = ("/deliveries?limit=100", "/runs?limit=50")  # the API's own page sizes


@dataclass
class ReaderTally:
    errors: int = 0
    seconds: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in READS})


async def poll(session: aiohttp.ClientSession, api: str, token: str, tally: ReaderTally) -> None:
    """What a browser tab on the deliveries and runs pages asks, round after round."""
    auth = {"Authorization": f"Bearer {token}"}
    while True:
        for path in READS:
            sent = time.perf_counter()
            try:
                async with session.get(f"{api}{path}", headers=auth) as resp:
                    await resp.read()
                    if resp.status != 200:
                        tally.errors += 1
            except (aiohttp.ClientError, TimeoutError):
                tally.errors += 1
            tally.seconds[path].append(time.perf_counter() - sent)
        await asyncio.sleep(READER_PAUSE)


async def slow_read(path: str, after: float, hold: float) -> tuple[float, float]:
    """One read transaction held open for ``hold`` seconds, from ``after`` seconds on: its
    snapshot keeps every later frame in the log. Returns when it began and ended
    (monotonic)."""
    await asyncio.sleep(after)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM runs").fetchall()  # the snapshot starts here
        began = time.monotonic()
        await asyncio.sleep(hold)
        conn.execute("COMMIT")
        return began, time.monotonic()
    finally:
        conn.close()


@dataclass(frozen=True)
class WalResult:
    rate: float
    readers: int
    load: list[tuple[float, int]]  # samples while the events were being sent
    idle: list[tuple[float, int]]  # samples after the last event arrived, seconds from then
    latency: LatencyResult
    reads: ReaderTally
    slow_read: tuple[float, float] | None  # seconds since the load began: start, end

    @property
    def max_during_load(self) -> tuple[float, int]:
        return max(self.load, key=lambda p: p[1], default=(math.nan, 0))

    @property
    def truncated_after(self) -> float | None:
        """Seconds from the end of the load to the first sample of an empty log."""
        return next((t for t, size in self.idle if size == 0), None)

    def table(self, step: float) -> str:
        lines = ["    t (s)  -wal now (MB)  max since last row (MB)"]
        rows = [(t, s, "load") for t, s in self.load]
        end = self.load[-1][0] if self.load else 0.0
        rows += [(end + t, s, "idle") for t, s in self.idle]
        next_row, window_max, phase_seen = 0.0, 0, ""
        for t, size, phase in rows:
            window_max = max(window_max, size)
            if t + SAMPLE_EVERY / 2 >= next_row or phase != phase_seen:
                mark = "  (idle from here)" if phase == "idle" and phase_seen == "load" else ""
                lines.append(f"{t:9.0f}  {size / MB:13.1f}  {window_max / MB:23.1f}{mark}")
                next_row, window_max, phase_seen = t + step, 0, phase
        return "\n".join(lines)

    def summary(self) -> str:
        at, biggest = self.max_during_load
        lat_ms = [v * 1000 for v in self.latency.samples]
        api_ms = [v * 1000 for v in self.latency.api_seconds]
        truncated = self.truncated_after
        at_end = self.load[-1][1] if self.load else 0
        idle_for = self.idle[-1][0] if self.idle else 0.0
        bound = "met" if biggest < BOUND_MB * MB else "**not met**"
        if truncated is None:
            trunc = f"not within {idle_for:.0f} s: **not met**"
        else:
            met = "met" if truncated <= TRUNCATED_WITHIN else "**not met**"
            trunc = f"{truncated:.0f} s after the last event arrived (target ≤ "
            trunc += f"{TRUNCATED_WITHIN:g} s: {met})"
        lines = [
            f"-wal file, max during the load:  {biggest / MB:.1f} MB at t={at:.0f} s "
            f"(target < {BOUND_MB:g} MB: {bound})",
            f"-wal file, end of the load:      {at_end / MB:.1f} MB",
            f"-wal file truncated to 0 bytes:  {trunc}",
            f"events: {len(self.latency.api_seconds) + round(self.rate * WARMUP):,} PATCHes, "
            f"client kept {self.latency.offered_rate:.1f}/s, API answered "
            f"{self.latency.answered_rate:.1f}/s, {self.latency.api_errors} errors",
            f"API → first attempt: p50 {percentile(lat_ms, 50):.1f} ms, "
            f"p99 {percentile(lat_ms, 99):.1f} ms, max {max(lat_ms, default=math.nan):.1f} ms; "
            f"{self.latency.missing} never arrived",
            f"PATCH response time: p50 {percentile(api_ms, 50):.1f} ms, "
            f"p99 {percentile(api_ms, 99):.1f} ms",
            f"readers: {self.readers} polling, {self.reads.errors} errors",
        ]
        for path, seconds in self.reads.seconds.items():
            ms = [v * 1000 for v in seconds]
            lines.append(
                f"  GET {path}: {len(ms):,}, p50 {percentile(ms, 50):.1f} ms, "
                f"p99 {percentile(ms, 99):.1f} ms"
            )
        if self.slow_read is not None:
            began, ended = self.slow_read
            during = [s for t, s in self.load if began <= t <= ended + 5]
            other = [s for t, s in self.load if not began <= t <= ended + 5]
            lines.append(
                f"slow read: open t={began:.0f}–{ended:.0f} s; -wal max from then to 5 s "
                f"after it ended: {max(during, default=0) / MB:.1f} MB, the rest of the load: "
                f"{max(other, default=0) / MB:.1f} MB"
            )
        return "\n".join(lines)


@click.command()
@options.rate_option(help="Run updates (events) per second.")
@click.option("--seconds", default=600.0, show_default=True, help="Length of the load.")
@click.option(
    "--idle", default=90.0, show_default=True, help="Seconds to watch the file after the load."
)
@click.option(
    "--readers", default=2, show_default=True, help="Clients polling the API during it all."
)
@click.option(
    "--slow-read",
    default=0.0,
    show_default=True,
    help="Hold one read transaction open this many seconds, halfway through the load.",
)
@click.option(
    "--synchronous",
    type=click.Choice(["OFF", "NORMAL", "FULL", "EXTRA"], case_sensitive=False),
    default=None,
    envvar="LOADBELL_SQLITE_SYNCHRONOUS",
    show_envvar=True,
    help="SQLite PRAGMA synchronous. Default: loadbell's (NORMAL).",
)
@click.option(
    "--every", default=10.0, show_default=True, help="Seconds between rows of the size table."
)
def main(
    rate: float,
    seconds: float,
    idle: float,
    readers: int,
    slow_read: float,
    synchronous: str | None,
    every: float,
) -> None:
    """Measure the -wal file's size under steady traffic and after it stops."""
    if rate <= 0 or seconds <= 0 or idle < 0 or readers < 0 or slow_read < 0:
        raise click.UsageError("--rate and --seconds must be positive, the others not negative")
    if slow_read >= seconds / 2:
        raise click.UsageError("--slow-read must end before the load does: under --seconds / 2")
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-bench-wal-"))
    receiver = ReceiverProcess(free_port()).start()
    try:
        result = loop.run(
            _bench(
                workdir,
                receiver,
                rate=rate,
                seconds=seconds,
                idle=idle,
                readers=readers,
                slow_read_seconds=slow_read,
                synchronous=synchronous,
            )
        )
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(result.table(every))
    click.echo()
    click.echo(result.summary())


async def _bench(
    workdir: Path,
    receiver: ReceiverProcess,
    *,
    rate: float,
    seconds: float,
    idle: float,
    readers: int,
    slow_read_seconds: float,
    synchronous: str | None,
) -> WalResult:
    async with databases.scratch_database("sqlite", workdir, "wal") as url:
        overrides: dict[str, object] = {
            "database_url": url,
            "secret_key": SECRET,
            "secret_key_file": workdir / "unused.key",
            "allow_private_targets": True,  # the receiver is on 127.0.0.1
            "public_url": PUBLIC_URL,
        }
        if synchronous:
            overrides["sqlite_synchronous"] = synchronous
        settings = Settings(**overrides)  # type: ignore[arg-type]
        token = await databases.seed(settings)
        warm = round(rate * WARMUP)
        run_ids = await prepare_runs(settings, warm + round(rate * seconds))
        db_path = sqlite_path(url)
        server = ServerProcess(settings, free_port(), workdir / "serve.log")
        click.echo(
            f"{len(run_ids):,} events at {rate:g}/s, then {idle:g} s idle, "
            f"{readers} reader{'' if readers == 1 else 's'} polling ...",
            err=True,
        )
        timeout = aiohttp.ClientTimeout(total=60)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            aiohttp.ClientSession(timeout=timeout) as read_session,
        ):
            await server.start(session)
            wal = WalSamples(Path(f"{db_path}-wal"))
            tally = ReaderTally()
            side: list[asyncio.Task[None]] = []
            slow: asyncio.Task[tuple[float, float]] | None = None
            try:
                side.append(asyncio.create_task(wal.run()))
                api = f"{server.url}/api/v1"
                side += [
                    asyncio.create_task(poll(read_session, api, token, tally))
                    for _ in range(readers)
                ]
                if slow_read_seconds:
                    slow = asyncio.create_task(
                        slow_read(db_path, seconds / 2 - slow_read_seconds / 2, slow_read_seconds)
                    )
                latency = await measure_latency(
                    server, receiver, session, token, run_ids, rate=rate, warmup=warm
                )
                load_ended = time.monotonic() - wal.started
                await asyncio.sleep(idle)
                slow_span = None
                if slow is not None:
                    began, ended = await slow
                    slow_span = (began - wal.started, ended - wal.started)
            except Exception:
                click.echo(server.log.read_text()[-4000:], err=True)
                raise
            finally:
                for task in side:
                    task.cancel()
                for task in side:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await server.stop()

    return WalResult(
        rate=rate,
        readers=readers,
        load=[(t, s) for t, s in wal.points if t <= load_ended],
        idle=[(t - load_ended, s) for t, s in wal.points if t > load_ended],
        latency=latency,
        reads=tally,
        slow_read=slow_span,
    )


if __name__ == "__main__":
    main()
