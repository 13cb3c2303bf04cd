"""Delivery benchmark: raw loop, worker drain and API latency, in one run.

    python -m bench.deliveries [--n 20000] [--db sqlite|postgresql] [--channels 1]
                               [--rate 200] [--seconds 20] [--write-docs]

1. Stages N queued deliveries (bulk inserts) for one webhook channel (or --channels).
2. Raw loop: N bare aiohttp POSTs of the same request to the same receiver, at the
   worker's concurrency.
3. Drain: loadbell's Worker (this process, uvloop) delivers the backlog; timed until all N
   are recorded as succeeded.
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

from bench import backlog, databases, loop, options, report
from bench.drain import drain
from bench.latency import ServerProcess, measure_latency, prepare_runs
from bench.proc_cpu import tree_cpu
from bench.raw import raw_loop
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
@options.rate_option(help="Events/s for the latency phase.")
@click.option("--seconds", default=20.0, show_default=True, help="Length of the latency phase.")
@click.option(
    "--warmup", default=1.0, show_default=True, help="Seconds of the latency phase not measured."
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
    rate: float,
    seconds: float,
    warmup: float,
    synchronous: str | None,
    profile: Path | None,
    write_docs: bool,
    docs_path: Path,
) -> None:
    """Measure deliveries/s against a raw aiohttp loop, and API → first-attempt latency."""
    if n < 2 or rate <= 0 or seconds <= 0 or warmup < 0:
        raise click.UsageError("--n must be at least 2; --rate and --seconds must be positive")
    command = (
        f"python -m bench.deliveries --n {n} --db {backend} --rate {rate:g} --seconds {seconds:g}"
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
                rate=rate,
                seconds=seconds,
                warmup=warmup,
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
    rate: float,
    seconds: float,
    warmup: float,
    synchronous: str | None,
    profile: Path | None,
    command: str,
) -> report.Report:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        # Drain database: stage first (not timed), then the raw loop, then the drain.
        async with databases.scratch_database(backend, workdir, "drain") as url:
            settings = _settings(url, workdir, synchronous)
            machine = report.Machine.describe(await databases.server_version(settings))
            await databases.seed(settings)
            box = SecretBox(SECRET)
            engine = create_engine(settings)
            try:
                click.echo(f"staging {n:,} deliveries ...", err=True)
                context = await backlog.stage_backlog(
                    engine, box, f"{receiver.url}/drain", n, PUBLIC_URL, channels
                )
                request = backlog.sample_request(f"{receiver.url}/drain", context, PUBLIC_URL)
                click.echo(f"raw loop: {n:,} POSTs ...", err=True)
                before = await receiver.stats(session)
                raw = await raw_loop(request, n, settings.worker_concurrency)
                raw_rx_cpu = (await receiver.stats(session)).cpu - before.cpu
                await receiver.reset(session)
                click.echo(f"drain: {n:,} deliveries ...", err=True)
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
                drain_rx_cpu = after.cpu - before.cpu
            finally:
                await engine.dispose()

        # Latency database: a fresh one, so the drained backlog does not weigh on it.
        async with databases.scratch_database(backend, workdir, "latency") as url:
            settings = _settings(url, workdir, synchronous)
            token = await databases.seed(settings)
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
        raw=raw,
        drain=drained,
        receiver_cpu=(raw_rx_cpu, drain_rx_cpu),
        channels=channels,
        latency=latency,
        rate=rate,
        latency_cpu=latency_cpu,
        patches=len(run_ids),
    )


if __name__ == "__main__":
    main()
