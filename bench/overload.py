"""Overload: the highest rate the API sustains on SQLite, then twice that rate.

    python -m bench.overload [--seconds 60] [--step-seconds 8] [--start-rate 50]
                             [--rate R] [--max-in-flight N] [--write-docs]

``loadbell serve`` runs as a child process on a SQLite file (no channels, so the worker is
idle and every request is the API's own work). An open-loop aiohttp client (request i is
sent at t0 + i/rate whatever happened to the others; no connection limit) sends the mix a
load-test tool makes: a third ``POST /runs`` (with an ``Idempotency-Key``) and two thirds
``PATCH /runs/{id}``, moving runs the client created to Running and then to Finished (a
PATCH that got a 503 is sent again later; with no run ready, the slot is a POST).
Latency is from the *scheduled* send time to the answer, so a lagging client cannot hide
queueing.

1. **Search.** Steps of ``--step-seconds`` at rising rates (×1.3 from ``--start-rate``),
   then two bisections: the highest rate whose step had p99 ≤ 100 ms, no error and no 503.
   ``--rate`` skips the search.
2. **Twice that rate** for ``--seconds`` with a client timeout of 30 s: successes, 503s
   (and their latency), client timeouts (must be 0), and orphan runs: runs at Created that
   no client got a 2xx for (must be 0).
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import sqlite3
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click

from bench import databases, loop, report
from bench.deliveries import PUBLIC_URL, SECRET, free_port
from bench.latency import ServerProcess
from bench.report import SHARED, measured_with, percentile
from loadbell.settings import Settings
from loadbell.store.db import sqlite_path

P99_TARGET = 0.100  # seconds: what "sustains" means
CLIENT_TIMEOUT = 30.0  # seconds, as the clients of the issue had
GROWTH = 1.3  # rate factor between two search steps
CREATED = -2


@dataclass
class Tally:
    """What one phase's client saw."""

    rate: float
    seconds: float
    sent: int = 0
    ok: list[float] = field(default_factory=list)  # seconds, 2xx answers
    overloaded: list[float] = field(default_factory=list)  # seconds, 503 answers
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    timeouts: int = 0
    created: set[int] = field(default_factory=set)  # run ids a POST /runs answer carried
    posts: int = 0
    patches: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    offered: float = 0.0  # requests/s the client actually kept up
    orphans: int | None = None

    @property
    def all_latencies(self) -> list[float]:
        return self.ok + self.overloaded

    def sustained(self) -> bool:
        return (
            percentile(self.all_latencies, 99) <= P99_TARGET
            and not self.overloaded
            and not self.errors
            and not self.timeouts
            and self.offered >= 0.95 * self.rate
        )

    def line(self) -> str:
        ms = [v * 1000 for v in self.all_latencies]
        return (
            f"{self.rate:7.0f}/s offered {self.offered:6.0f}/s: {len(self.ok):6,} ok, "
            f"{len(self.overloaded):5,} 503, {sum(self.errors.values())} other errors, "
            f"{self.timeouts} timeouts; p50 {percentile(ms, 50):6.1f} ms, "
            f"p99 {percentile(ms, 99):7.1f} ms; client in flight max {self.max_in_flight}"
        )


class Load:
    """The open-loop client: runs it created, waiting for their next status."""

    def __init__(self, session: aiohttp.ClientSession, api: str, token: str) -> None:
        self.session = session
        self.api = api
        self.auth = {"Authorization": f"Bearer {token}"}
        self.ready: collections.deque[tuple[int, int]] = collections.deque()

    async def phase(self, rate: float, seconds: float) -> Tally:
        tally = Tally(rate, seconds)
        count = max(1, round(rate * seconds))
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        tasks = []
        for i in range(count):
            due = start + i / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._one(i, due, tally)))
        last = loop.time()
        tally.offered = (count - 1) / (last - start) if count > 1 else rate
        await asyncio.gather(*tasks)
        return tally

    async def _one(self, i: int, due: float, tally: Tally) -> None:
        loop = asyncio.get_running_loop()
        if i % 3 == 0 or not self.ready:
            tally.posts += 1
            method, url = "POST", f"{self.api}/runs"
            body: dict[str, object] = {"project_id": 1, "load_test_name": f"overload-{i % 8}"}
            headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
            run = None
        else:
            tally.patches += 1
            run = self.ready.popleft()
            method, url = "PATCH", f"{self.api}/runs/{run[0]}"
            body, headers = {"status": run[1]}, self.auth
        tally.sent += 1
        tally.in_flight += 1
        tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
        try:
            async with self.session.request(method, url, json=body, headers=headers) as resp:
                answer = await resp.json() if resp.content_type == "application/json" else {}
                status = resp.status
        except TimeoutError:
            tally.timeouts += 1
            return
        except aiohttp.ClientError as exc:
            tally.errors[exc.__class__.__name__] += 1
            return
        finally:
            tally.in_flight -= 1
        took = loop.time() - due
        if status == 503 and answer.get("error") == "overloaded":
            tally.overloaded.append(took)
            if run is not None:
                self.ready.append(run)  # not done: a client sends it again later
            return
        if status >= 300:
            tally.errors[f"{method} {status} {answer.get('error')}"] += 1
            return
        tally.ok.append(took)
        if run is None:
            tally.created.add(int(answer["id"]))
            self.ready.append((int(answer["id"]), 2))
        elif run[1] == 2:
            self.ready.append((run[0], 3))


def orphans(database: str, created: set[int]) -> int:
    """Runs at Created that no client got an answer for."""
    conn = sqlite3.connect(database)
    try:
        ids = {r[0] for r in conn.execute("SELECT id FROM runs WHERE status = ?", (CREATED,))}
    finally:
        conn.close()
    return len(ids - created)


@dataclass(frozen=True)
class Result:
    search: list[Tally]
    sustained: float
    double: Tally
    settings: Settings
    command: str
    machine: report.Machine

    def summary(self) -> str:
        d = self.double
        ok_ms = [v * 1000 for v in d.ok]
        busy_ms = [v * 1000 for v in d.overloaded]
        lines = [
            f"sustained (p99 ≤ {P99_TARGET * 1000:.0f} ms, no 503, no error): "
            f"{self.sustained:.0f} requests/s",
            f"twice that: {d.rate:.0f}/s for {d.seconds:g} s (client kept {d.offered:.0f}/s), "
            f"{d.sent:,} requests ({d.posts:,} POST /runs, {d.patches:,} PATCH)",
            f"  successes: {len(d.ok):,} ({len(d.ok) / max(d.seconds, 1e-9):.0f}/s); "
            f"p50 {percentile(ok_ms, 50):.1f} ms, p99 {percentile(ok_ms, 99):.1f} ms",
            f"  503 overloaded: {len(d.overloaded):,}; p50 {percentile(busy_ms, 50):.1f} ms, "
            f"p99 {percentile(busy_ms, 99):.1f} ms",
            f"  other errors: {sum(d.errors.values())} {dict(d.errors) or ''}".rstrip(),
            f"  client timeouts ({CLIENT_TIMEOUT:g} s): {d.timeouts} (must be 0)",
            f"  orphan runs: {d.orphans} (must be 0)",
            f"  client in flight at most: {d.max_in_flight}",
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        d = self.double
        ok_ms = [v * 1000 for v in d.ok]
        busy_ms = [v * 1000 for v in d.overloaded]
        rows = [
            (
                f"Highest rate with p99 ≤ {P99_TARGET * 1000:.0f} ms",
                f"{self.sustained:.0f} requests/s",
                "no 503, no error in its step",
            ),
            (
                f"Twice that, for {d.seconds:g} s",
                f"{d.rate:.0f} requests/s",
                f"client kept {d.offered:.0f}/s; {d.sent:,} requests",
            ),
            (
                "Successes",
                f"{len(d.ok):,} ({len(d.ok) / max(d.seconds, 1e-9):.0f}/s)",
                f"p50 {percentile(ok_ms, 50):.1f} ms, p99 {percentile(ok_ms, 99):.1f} ms",
            ),
            (
                "503 overloaded",
                f"{len(d.overloaded):,}",
                f"p50 {percentile(busy_ms, 50):.1f} ms, p99 {percentile(busy_ms, 99):.1f} ms",
            ),
            ("Other errors", f"{sum(d.errors.values())}", str(dict(d.errors) or "")),
            (f"Client timeouts ({CLIENT_TIMEOUT:g} s)", f"{d.timeouts}", "target 0"),
            ("Orphan runs (Created, no client got a 2xx)", f"{d.orphans}", "target 0"),
        ]
        steps = "\n".join(f"    {t.line()}" for t in self.search)
        return "\n".join(
            [
                *measured_with(self.command, self.machine, after_load=SHARED),
                f"- `LOADBELL_MAX_IN_FLIGHT={self.settings.max_in_flight}`, "
                f"`LOADBELL_MAX_LOOP_LAG_MS={self.settings.max_loop_lag_ms}`; client, server "
                "and database on the same machine.",
                "",
                "| Measure | Value | Notes |",
                "|---|---|---|",
                *(f"| {a} | {b} | {c} |" for a, b, c in rows),
                "",
                "The search, step by step (latency from the scheduled send):",
                "",
                "```text",
                steps,
                "```",
            ]
        )


async def _search(load: Load, start: float, step: float) -> tuple[float, list[Tally]]:
    steps: list[Tally] = []
    best, rate = 0.0, start
    while True:
        tally = await load.phase(rate, step)
        steps.append(tally)
        click.echo(f"  {tally.line()}", err=True)
        if not tally.sustained():
            break
        best, rate = rate, rate * GROWTH
        await asyncio.sleep(1)  # let the last answers and the checkpointer settle
    low, high = best, rate
    for _ in range(2):  # two bisections between the last rate that held and the first not
        if low == 0:
            break
        middle = (low + high) / 2
        await asyncio.sleep(1)
        tally = await load.phase(middle, step)
        steps.append(tally)
        click.echo(f"  {tally.line()}", err=True)
        low, high = (middle, high) if tally.sustained() else (low, middle)
    return low, steps


async def _bench(
    workdir: Path,
    *,
    seconds: float,
    step: float,
    start: float,
    rate: float | None,
    max_in_flight: int,
    max_loop_lag_ms: int,
    command: str,
) -> Result:
    async with databases.scratch_database("sqlite", workdir, "overload") as url:
        settings = Settings(
            database_url=url,
            secret_key=SECRET,
            secret_key_file=workdir / "unused.key",
            public_url=PUBLIC_URL,
            max_in_flight=max_in_flight,
            max_loop_lag_ms=max_loop_lag_ms,
        )
        machine = report.Machine.describe(await databases.server_version(settings))
        token = await databases.seed(settings)
        server = ServerProcess(settings, free_port(), workdir / "serve.log")
        connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue in the client
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await server.start(session)
            try:
                load = Load(session, f"{server.url}/api/v1", token)
                await load.phase(20, 1)  # warm-up: connections, statement caches
                if rate is None:
                    click.echo("search: rising rates until p99 > 100 ms ...", err=True)
                    sustained, steps = await _search(load, start, step)
                else:
                    sustained, steps = rate, []
                if sustained <= 0:
                    raise click.ClickException(f"not even {start:g}/s held; try --start-rate")
                await asyncio.sleep(2)
                click.echo(f"overload: {2 * sustained:.0f}/s for {seconds:g} s ...", err=True)
                double = await load.phase(2 * sustained, seconds)
                double.orphans = orphans(sqlite_path(url), double.created | _all(steps))
            except Exception:
                click.echo(server.log.read_text()[-4000:], err=True)
                raise
            finally:
                await server.stop()
    return Result(steps, sustained, double, settings, command, machine)


def _all(steps: list[Tally]) -> set[int]:
    return set().union(*(t.created for t in steps)) if steps else set()


@click.command()
@click.option("--seconds", default=60.0, show_default=True, help="Length of the 2× phase.")
@click.option("--step-seconds", default=8.0, show_default=True, help="Length of each search step.")
@click.option("--start-rate", default=50.0, show_default=True, help="First search rate.")
@click.option("--rate", type=float, default=None, help="Skip the search: the sustained rate.")
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=Settings.model_fields["max_in_flight"].default,
    show_default=True,
    help="The server's LOADBELL_MAX_IN_FLIGHT.",
)
@click.option(
    "--max-loop-lag-ms",
    type=click.IntRange(min=0),
    default=Settings.model_fields["max_loop_lag_ms"].default,
    show_default=True,
    help="The server's LOADBELL_MAX_LOOP_LAG_MS (0: off).",
)
@report.docs_options
def main(
    seconds: float,
    step_seconds: float,
    start_rate: float,
    rate: float | None,
    max_in_flight: int,
    max_loop_lag_ms: int,
    write_docs: bool,
    docs_path: Path,
) -> None:
    """Find the rate the API sustains on SQLite, then send twice that rate."""
    if seconds <= 0 or step_seconds <= 0 or start_rate <= 0 or (rate is not None and rate <= 0):
        raise click.UsageError("--seconds, --step-seconds, --start-rate and --rate must be > 0")
    command = " ".join(["python -m bench.overload", *sys.argv[1:]])
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-overload-"))
    try:
        result = loop.run(
            _bench(
                workdir,
                seconds=seconds,
                step=step_seconds,
                start=start_rate,
                rate=rate,
                max_in_flight=max_in_flight,
                max_loop_lag_ms=max_loop_lag_ms,
                command=command,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(result.summary())
    if write_docs:
        report.write_block("overload", result.markdown(), docs_path)
        click.echo(f"\nwritten to {docs_path}")
    if result.double.timeouts or result.double.orphans:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
