"""The delivery log on a large database, through a real ``loadbell serve``, with /healthz probed.

    python -m bench.delivery_log [--n 1000000] [--db sqlite|postgresql] [--rounds 5]
                                 [--keep FILE | --reuse FILE] [--write-docs [--docs FILE]]

``--keep FILE`` leaves the seeded database in place (SQLite: next to FILE) and writes its URL
and ids to FILE (JSON); ``--reuse FILE`` times that database again without seeding, so a
before and an after can be paired on one seed. Drop a kept PostgreSQL database by hand.

1. Seeds a scratch database with N deliveries (``bench/seed_log.py``).
2. Starts ``loadbell serve`` on it (a child process, with its in-process worker; nothing in
   the seed is due, so the worker stays idle) and signs in to the web pages with the
   owner's API token.
3. Times every shape of delivery-log query, ``--rounds`` times each (after ``--warmup``
   unmeasured rounds of all of them), one after another: the
   API (``GET /api/v1/deliveries``) without a filter, with each filter, with combinations,
   first pages and deep pages (``before_id`` / ``after_id``), as the owner of all four
   organizations and as a token of the smallest one; and the web pages that list
   deliveries (``/orgs/{id}/deliveries`` with the same filters, a run's page).
4. Meanwhile a second client asks ``GET /healthz`` every 15 ms on a connection of its own:
   its answers during the queries say whether a query stalled the event loop.

Figures: p50 / p99 / max per query (client side, whole HTTP answer), and /healthz p50 / p99 /
max over the whole query phase. ``--write-docs`` puts the table into docs/benchmarks.md
between ``<!-- bench:delivery-log:<db>:begin/end -->``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import click

from bench import databases, report
from bench.delivery_log_queries import Query, queries
from bench.latency import ServerProcess
from bench.seed_log import Seeded, seed
from loadbell.settings import Settings

PROBE_EVERY = 0.015  # seconds between /healthz probes
TARGET_MS = 50.0  # issue 15: every delivery-log query, and /healthz meanwhile
# A query slower than this is asked only 3 times (a slow "before" would take many minutes).
SLOW = 1.0  # seconds


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Timing:
    query: Query
    seconds: list[float] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)
    items: int = 0

    def ms(self, q: float) -> float:
        return report.percentile([s * 1000 for s in self.seconds], q)


@dataclass
class Probe:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    failures: int = 0

    def between(self, start: float, end: float) -> list[float]:
        return [s * 1000 for at, s in self.samples if start <= at <= end]


async def probe(url: str, into: Probe, stop: asyncio.Event) -> None:
    """/healthz every PROBE_EVERY seconds, one request at a time, on its own connection."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        while not stop.is_set():
            sent = time.perf_counter()
            try:
                async with session.get(f"{url}/healthz") as resp:
                    await resp.read()
                    if resp.status != 200:
                        into.failures += 1
            except aiohttp.ClientError:
                into.failures += 1
            took = time.perf_counter() - sent
            into.samples.append((sent, took))
            await asyncio.sleep(max(0.0, PROBE_EVERY - took))


async def sign_in(session: aiohttp.ClientSession, url: str, token: str) -> None:
    """The web sign-in with an API token (a session cookie in ``session``'s jar)."""
    async with session.get(f"{url}/login") as resp:
        page = await resp.text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    if found is None:
        raise RuntimeError("no CSRF field on /login")
    form = {"csrf": found.group(1), "method": "token", "token": token, "next": "/"}
    async with session.post(f"{url}/login", data=form, allow_redirects=False) as resp:
        if resp.status != 303:
            raise RuntimeError(f"sign-in failed: {resp.status} {await resp.text()}")


async def time_queries(
    url: str, seeded: Seeded, rounds: int, warmup: int
) -> tuple[list[Timing], float, float]:
    """Each query ``rounds`` times; returns the timings and the phase's start and end."""
    timings = [Timing(q) for q in queries(seeded)]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
        await sign_in(web, url, seeded.token)
        async with aiohttp.ClientSession() as api:
            # one warm-up round trip each, so the first query does not pay for a connection
            await (await api.get(f"{url}/healthz")).read()
            for _ in range(warmup):  # not measured: a server that has run a while
                for t in timings:
                    session = web if t.query.web else api
                    headers = {"Authorization": f"Bearer {t.query.token}"} if t.query.token else {}
                    await (await session.get(url + t.query.path, headers=headers)).read()
            began = time.perf_counter()
            for t in timings:
                session = web if t.query.web else api
                headers = {"Authorization": f"Bearer {t.query.token}"} if t.query.token else {}
                for i in range(rounds):
                    sent = time.perf_counter()
                    async with session.get(url + t.query.path, headers=headers) as resp:
                        body = await resp.read()
                        t.statuses.add(resp.status)
                    t.seconds.append(time.perf_counter() - sent)
                    if i == 0 and not t.query.web and resp.status == 200:
                        t.items = body.count(b'"uuid"')
                    elif i == 0 and t.query.web:
                        t.items = body.count(b'class="delivery delivery-')
                    if i >= 2 and min(t.seconds) > SLOW:
                        break
                print(
                    f"  {t.query.label:<58} p50 {t.ms(50):8.1f} ms  max {t.ms(100):8.1f} ms"
                    f"  ({t.items} items, HTTP {sorted(t.statuses)})",
                    flush=True,
                )
            ended = time.perf_counter()
    return timings, began, ended


@contextlib.asynccontextmanager
async def seeded_database(
    backend: str, n: int, workdir: Path, keep: Path | None, reuse: Path | None
) -> AsyncIterator[tuple[str, Seeded]]:
    """A seeded database: made here (and dropped after, unless ``keep``), or a kept one."""
    if reuse is not None:
        yield load_kept(reuse)
        return
    where = keep.parent if keep is not None and backend == "sqlite" else workdir
    async with databases.scratch_database(backend, where, "log", keep=keep is not None) as url:
        print(f"seeding {n:,} deliveries into {backend}", flush=True)
        seeded = await seed(url, n)
        if keep is not None:
            save_kept(keep, url, seeded)
            print(f"kept: {url} (ids in {keep})", flush=True)
        yield url, seeded


def save_kept(path: Path, url: str, seeded: Seeded) -> None:
    path.write_text(json.dumps({"url": url, "seeded": dataclasses.asdict(seeded)}))


def load_kept(path: Path) -> tuple[str, Seeded]:
    kept = json.loads(path.read_text())
    seeded = Seeded(**kept["seeded"])
    # JSON object keys are strings; the bench looks organizations up by int
    seeded.channels = {int(k): v for k, v in seeded.channels.items()}
    seeded.runs = {int(k): v for k, v in seeded.runs.items()}
    return kept["url"], seeded


async def run(
    backend: str,
    n: int,
    rounds: int,
    warmup: int,
    workdir: Path,
    keep: Path | None = None,
    reuse: Path | None = None,
) -> str:
    async with seeded_database(backend, n, workdir, keep, reuse) as (url, seeded):
        settings = Settings(database_url=url, secret_key="bench", base_url="http://127.0.0.1")
        version = await databases.server_version(settings)
        server = ServerProcess(settings, free_port(), workdir / f"serve-{backend}.log")
        load_before = os.getloadavg()
        async with aiohttp.ClientSession() as session:
            await server.start(session)
        stop, probed = asyncio.Event(), Probe()
        prober = asyncio.create_task(probe(server.url, probed, stop))
        try:
            timings, began, ended = await time_queries(server.url, seeded, rounds, warmup)
        finally:
            stop.set()
            await prober
            await server.stop()
        load_after = os.getloadavg()
        return render(
            backend, version, n, rounds, warmup, seeded, timings, probed.between(began, ended),
            probed.failures, load_before, load_after,
        )  # fmt: skip


def _fmt(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def render(
    backend: str,
    version: str,
    n: int,
    rounds: int,
    warmup: int,
    seeded: Seeded,
    timings: list[Timing],
    health: list[float],
    failures: int,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    worst = max(t.ms(99) for t in timings)
    slow = [t for t in timings if t.ms(99) > TARGET_MS]
    health_p99 = report.percentile(health, 99)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {backend} ({version}):"
        f" {seeded.deliveries:,} deliveries, {seeded.attempts:,} attempts,"
        f" {seeded.events:,} events (seeded in {seeded.seconds:.0f} s); each query"
        f" {rounds} times (3 when slower than {SLOW:g} s), after {warmup} unmeasured"
        f" round{'s' if warmup != 1 else ''} of all of them.",
        f"Load average {' '.join(f'{v:.2f}' for v in load_before)} before,"
        f" {' '.join(f'{v:.2f}' for v in load_after)} after"
        f" ({os.cpu_count()} CPUs, shared with other work).",
        "",
        "| query | p50 ms | p99 ms | max ms | items |",
        "| ----- | -----: | -----: | -----: | ----: |",
    ]
    for t in timings:
        lines.append(
            f"| {t.query.label} | {_fmt(t.ms(50))} | {_fmt(t.ms(99))} | {_fmt(t.ms(100))}"
            f" | {t.items} |"
        )
    lines += [
        "",
        f"Slowest query p99: {_fmt(worst)} ms; queries over {TARGET_MS:g} ms at p99:"
        f" {len(slow)} of {len(timings)}"
        f" ({'target met' if not slow else '**target not met**'}).",
        f"`/healthz` during the queries ({len(health)} probes, every {PROBE_EVERY * 1000:g} ms):"
        f" p50 {_fmt(report.percentile(health, 50))} ms, p99 {_fmt(health_p99)} ms,"
        f" max {_fmt(max(health, default=0.0))} ms, {failures} failed"
        f" ({'target met' if health_p99 <= TARGET_MS else '**target not met**'}).",
    ]
    return "\n".join(lines)


def record(docs: Path, backend: str, command: str, text: str) -> None:
    begin, end = (
        f"<!-- bench:delivery-log:{backend}:begin -->",
        (f"<!-- bench:delivery-log:{backend}:end -->"),
    )
    block = f"{begin}\n`{command}`\n\n{text}\n{end}"
    content = docs.read_text()
    if begin in content:
        content = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, content,
                         flags=re.S)  # fmt: skip
    else:
        content += "\n" + block + "\n"
    docs.write_text(content)


@click.command()
@click.option("--n", default=1_000_000, show_default=True, help="Deliveries to seed.")
@click.option("--db", "backend", type=click.Choice(["sqlite", "postgresql"]), default="sqlite")
@click.option("--rounds", default=5, show_default=True, help="Times each query is asked.")
@click.option(
    "--warmup", default=1, show_default=True, help="Unmeasured rounds of every query first."
)
@click.option(
    "--keep",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the seeded database; write its URL and ids to this file.",
)
@click.option(
    "--reuse",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Time a database kept with --keep (no seeding).",
)
@report.docs_options
def main(
    n: int,
    backend: str,
    rounds: int,
    warmup: int,
    keep: Path | None,
    reuse: Path | None,
    write_docs: bool,
    docs_path: Path,
) -> None:
    """Time every delivery-log query on a seeded database while probing /healthz."""
    if keep is not None and reuse is not None:
        raise click.UsageError("--keep and --reuse do not go together")
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-log-"))
    keep = keep.resolve() if keep is not None else None
    try:
        text = asyncio.run(run(backend, n, rounds, warmup, workdir, keep, reuse))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    if write_docs:
        command = "python -m bench.delivery_log " + " ".join(sys.argv[1:])
        record(docs_path, backend, command.replace(" --write-docs", ""), text)


if __name__ == "__main__":
    main()
