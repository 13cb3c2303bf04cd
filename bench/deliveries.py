"""Delivery benchmark: raw loop, worker drain and API latency, in one run.

    python -m bench.deliveries [--n 20000] [--db sqlite|postgresql] [--channels 1]
                               [--drain-rounds 3] [--rate 200] [--seconds 20] [--write-docs]

Steps 1-3 are one round, repeated ``--drain-rounds`` times on a fresh database each:

1. Stages N queued deliveries (bulk inserts) for one webhook channel (or --channels).
2. Raw loop: N bare aiohttp POSTs of the same request to the same receiver, at the
   worker's concurrency.
3. Drain: loadbell's Worker (this process, uvloop) delivers the backlog; timed until all N
   are recorded as succeeded.

The drain / raw ratio of each round pairs a drain with the raw loop run just before it; the
verdict is the median round's. The raw loop alone moves by a third between runs minutes
apart on a shared 2-core VM (70-130 µs of CPU per request on one afternoon), so one pair
could pass or fail the target on the machine's mood.

4. Latency: ``loadbell serve`` (child process, with its in-process worker) receives
   ``PATCH /runs/{id}`` at a steady rate; time from the scheduled call to the receiver.

The receiver is a separate process (``bench/receiver.py``). Every phase stops by itself.
Worker settings come from LOADBELL_* variables as for ``loadbell serve``.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
from pathlib import Path

import aiohttp
import click

from bench import backlog, databases, loop, options, raw, report
from bench.drain import drain
from bench.latency import ServerProcess, measure_latency, prepare_runs
from bench.proc_cpu import tree_cpu
from bench.receiver import ReceiverProcess
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine

SECRET = "loadbell-bench"  # the scratch databases are dropped afterwards
PUBLIC_URL = "http://loadbell.bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@click.command()
@click.option("--n", "n", default=20_000, show_default=True, help="Backlog size to drain.")
@options.db_option()
@click.option(
    "--channels",
    default=1,
    show_default=True,
    help="Webhook channels the backlog is spread over (each is capped at "
    "LOADBELL_PER_CHANNEL_CONCURRENCY attempts in flight).",
)
@click.option(
    "--drain-rounds",
    default=3,
    show_default=True,
    help="Rounds of staging, raw loop and drain, each on a fresh database; the verdict is "
    "the median round's drain / raw ratio.",
)
@options.rate_option(help="Events/s for the latency phase.")
@click.option("--seconds", default=20.0, show_default=True, help="Length of the latency phase.")
@click.option(
    "--warmup", default=1.0, show_default=True, help="Seconds of the latency phase not measured."
)
@click.option(
    "--history",
    default=20_000,
    show_default=True,
    help="Deliveries already made that the latency database holds, analyzed, before its "
    "phase: a database in service, not one migrated a second ago (bench/backlog.py: "
    "stage_history).",
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
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a cProfile of the drain phase to this file (slows the drain).",
)
@report.docs_options
def main(
    n: int,
    backend: str,
    channels: int,
    drain_rounds: int,
    rate: float,
    seconds: float,
    warmup: float,
    history: int,
    synchronous: str | None,
    profile: Path | None,
    write_docs: bool,
    docs_path: Path,
) -> None:
    """Measure deliveries/s against a raw aiohttp loop, and API → first-attempt latency."""
    if n < 2 or drain_rounds < 1 or rate <= 0 or seconds <= 0 or warmup < 0 or history < 0:
        raise click.UsageError(
            "--n must be at least 2, --drain-rounds at least 1; --rate and --seconds must be "
            "positive; --history may not be negative"
        )
    command = (
        f"python -m bench.deliveries --n {n} --db {backend} --drain-rounds {drain_rounds} "
        f"--rate {rate:g} --seconds {seconds:g} --history {history}"
    )
    if backend == "sqlite":
        command = f"LOADBELL_SQLITE_SYNCHRONOUS={(synchronous or 'NORMAL').upper()} {command}"
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-bench-"))
    receiver = ReceiverProcess(free_port()).start()
    try:
        result = loop.run(
            _bench(
                backend,
                workdir,
                receiver,
                n=n,
                channels=channels,
                drain_rounds=drain_rounds,
                rate=rate,
                seconds=seconds,
                warmup=warmup,
                history=history,
                synchronous=synchronous,
                profile=profile,
                command=command,
            )
        )
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(result.table())
    if profile is not None:
        click.echo(f"\ndrain profile written to {profile} (the drain figure is slowed by it)")
    if write_docs:
        report.write_docs(result, docs_path)
        click.echo(f"\nwritten to {docs_path}")


def _settings(url: str, workdir: Path, synchronous: str | None) -> Settings:
    overrides: dict[str, object] = {
        "database_url": url,
        "secret_key": SECRET,
        "secret_key_file": workdir / "unused.key",
        "allow_private_targets": True,  # the receiver is on 127.0.0.1
        "public_url": PUBLIC_URL,
    }
    if synchronous:
        overrides["sqlite_synchronous"] = synchronous
    return Settings(**overrides)  # type: ignore[arg-type]


async def _bench(
    backend: str,
    workdir: Path,
    receiver: ReceiverProcess,
    *,
    n: int,
    channels: int,
    drain_rounds: int,
    rate: float,
    seconds: float,
    warmup: float,
    history: int,
    synchronous: str | None,
    profile: Path | None,
    command: str,
) -> report.Report:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        rounds = []
        for number in range(1, drain_rounds + 1):
            prefix = f"round {number} of {drain_rounds}: " if drain_rounds > 1 else ""
            # Each round on a fresh database, so an earlier round's rows do not weigh on it.
            async with databases.scratch_database(backend, workdir, f"drain{number}") as url:
                settings = _settings(url, workdir, synchronous)
                if number == 1:  # the load average as the run starts
                    machine = report.Machine.describe(await databases.server_version(settings))
                await databases.seed(settings)
                rounds.append(
                    await _drain_round(
                        session,
                        url,
                        settings,
                        receiver,
                        n=n,
                        channels=channels,
                        # Only the first round's: cProfile slows the drain it watches.
                        profile=profile if number == 1 else None,
                        warm_up=number == 1,
                        prefix=prefix,
                    )
                )

        # Latency database: a fresh one, so the drained backlog does not weigh on it.
        async with databases.scratch_database(backend, workdir, "latency") as url:
            settings = _settings(url, workdir, synchronous)
            token = await databases.seed(settings)
            if history:
                click.echo(f"latency: a history of {history:,} deliveries ...", err=True)
                engine = create_engine(settings)
                try:
                    await backlog.stage_history(engine, SecretBox(SECRET), history)
                finally:
                    await engine.dispose()
            warm = round(rate * warmup)
            run_ids = await prepare_runs(settings, warm + round(rate * seconds))
            server = ServerProcess(settings, free_port(), workdir / "serve.log")
            click.echo(
                f"latency: {len(run_ids):,} PATCHes at {rate:g}/s through loadbell serve ...",
                err=True,
            )
            await server.start(session)
            try:
                cpu_before = (tree_cpu(server.pid), databases.server_cpu(url))
                latency = await measure_latency(
                    server, receiver, session, token, run_ids, rate=rate, warmup=warm
                )
                latency_cpu = (
                    tree_cpu(server.pid) - cpu_before[0],
                    databases.server_cpu(url) - cpu_before[1],
                )
            except Exception:
                click.echo(server.log.read_text()[-4000:], err=True)
                raise
            finally:
                await server.stop()

    return report.Report(
        backend=backend,
        command=command + (" --write-docs" if "--write-docs" in sys.argv else ""),
        machine=machine,
        settings=settings,
        rounds=rounds,
        channels=channels,
        latency=latency,
        rate=rate,
        latency_cpu=latency_cpu,
        patches=len(run_ids),
        history=history,
    )


async def _drain_round(
    session: aiohttp.ClientSession,
    url: str,
    settings: Settings,
    receiver: ReceiverProcess,
    *,
    n: int,
    channels: int,
    profile: Path | None,
    warm_up: bool,
    prefix: str,
) -> report.DrainRound:
    """Stage ``n`` deliveries (not timed), then the raw loop, then the drain."""
    box = SecretBox(SECRET)
    engine = create_engine(settings)
    try:
        click.echo(f"{prefix}staging {n:,} deliveries ...", err=True)
        context = await backlog.stage_backlog(
            engine, box, f"{receiver.url}/drain", n, PUBLIC_URL, channels
        )
        request = backlog.sample_request(f"{receiver.url}/drain", context, PUBLIC_URL)
        if warm_up:
            await raw.warm_up(request, settings.worker_concurrency, min(n, raw.WARM_UP_REQUESTS))
            await receiver.reset(session)
        click.echo(f"{prefix}raw loop: {n:,} POSTs ...", err=True)
        before = await receiver.stats(session)
        ceiling = await raw.raw_loop(request, n, settings.worker_concurrency)
        raw_rx_cpu = (await receiver.stats(session)).cpu - before.cpu
        await receiver.reset(session)
        click.echo(f"{prefix}drain: {n:,} deliveries ...", err=True)
        before = await receiver.stats(session)
        # Bounded: at under 50 deliveries/s something is wrong; report what was done.
        drained = await drain(
            engine,
            settings,
            box,
            n,
            timeout=max(120.0, n / 50),
            profile=profile,
            server_cpu=lambda probe: databases.server_cpu(url, exclude=probe),
        )
        after = await receiver.stats(session)
        if after.count < drained.deliveries:
            raise RuntimeError(
                f"the receiver got {after.count} requests for "
                f"{drained.deliveries} finished deliveries"
            )
        await receiver.reset(session)
    finally:
        await engine.dispose()
    return report.DrainRound(ceiling, drained, (raw_rx_cpu, after.cpu - before.cpu))


if __name__ == "__main__":
    main()
