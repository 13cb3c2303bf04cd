"""The API path: notifications/s from ``PATCH /runs/{id}`` to the receiver, beside peers.

    python -m bench.api_path [--count 5000] [--in-flight 32] [--rounds 3]
                             [--arms loadbell,apprise,celery] [--serve-args ARGS]
                             [--external-worker] [--py-spy FILE] [--write-docs]

Per round, one arm after the other, all against one receiver (``bench/receiver.py``):

1. **loadbell.** A real ``loadbell serve`` child on a fresh SQLite file, with whatever
   worker it runs by default; ``--count`` runs created beforehand; one webhook channel
   subscribed to ``test.started``. A closed-loop client keeps ``--in-flight`` requests
   ``PATCH /runs/{id} {"status": 2}`` under way until every run has been sent (a 503 is
   sent again after 10 ms and counted). Figure: notifications/s from the first PATCH to
   the last arrival at the receiver, and the CPU ms per notification of ``serve`` and
   every process under it (``/proc/<pid>/stat``: utime + stime, children included).
2. **Apprise** and 3. **Celery with Redis**: ``bench/peers.py``. Optional: skipped, with
   the reason, when the package or the Redis server is missing.

``--serve-args`` adds options to ``serve``'s command line (for example ``"--no-worker"``).
``--external-worker`` runs ``serve --no-worker`` and one ``loadbell worker`` process beside
it on the same file: the scale-out shape. The CPU figure then counts both processes, and
the notes give each one's share.

Each arm first sends ``--warm`` notifications that are not timed (connections, caches,
imports). ``--py-spy FILE`` records a flame graph of ``serve`` during the first round's
timed phase (``pip install py-spy``; the figures of that round are slowed by it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click

from bench import databases, loop, peers, report
from bench.deliveries import PUBLIC_URL, SECRET, free_port
from bench.latency import ServerProcess, add_channel, prepare_runs, settings_env
from bench.peers import ArmResult, wait_for_arrivals
from bench.proc_cpu import own_cpu, tree_cpu
from bench.receiver import ReceiverProcess
from loadbell.settings import Settings

ARMS = ("loadbell", "apprise", "celery")
TARGET_RATE = 1000.0  # notifications/s (issue 15)
TARGET_RATIO = 1.5  # times each peer, measured in the same run
_FORMATS = {
    "503s (sent again)": ",.0f",
    "worker CPU ms": ".2f",
    "producer CPU ms": ".2f",
    "serve CPU ms": ".2f",
}


@dataclass
class PatchTally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200
    overloaded: int = 0  # 503s, sent again
    errors: int = 0


def _settings(url: str, workdir: Path) -> Settings:
    return Settings(
        database_url=url,
        secret_key=SECRET,
        secret_key_file=workdir / "unused.key",
        allow_private_targets=True,  # the receiver is on 127.0.0.1
        public_url=PUBLIC_URL,
    )  # type: ignore[call-arg]


async def _patch_all(
    session: aiohttp.ClientSession, api: str, token: str, run_ids: list[int], in_flight: int
) -> PatchTally:
    """Closed loop: ``in_flight`` lanes, each sends its next PATCH when the last answered."""
    auth = {"Authorization": f"Bearer {token}"}
    tally = PatchTally()
    todo: Iterator[int] = iter(run_ids)

    async def lane() -> None:
        for run_id in todo:
            while True:
                sent = time.perf_counter()
                try:
                    async with session.patch(
                        f"{api}/runs/{run_id}", headers=auth, json={"status": 2}
                    ) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    tally.errors += 1
                    break
                if status == 503:
                    tally.overloaded += 1
                    await asyncio.sleep(0.01)
                    continue
                if status == 200:
                    tally.latencies.append(time.perf_counter() - sent)
                else:
                    tally.errors += 1
                break

    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return tally


@contextlib.contextmanager
def _py_spy(path: Path | None, pid: int) -> Iterator[None]:
    if path is None:
        yield
        return
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    # A .txt file gets collapsed stacks (one line per stack and its sample count), for grep.
    form = "raw" if path.suffix == ".txt" else "flamegraph"
    spy = subprocess.Popen(
        [
            *(
                binary,
                "record",
                "-o",
                str(path),
                "--pid",
                str(pid),
                "--rate",
                "250",
                "--nonblocking",
            ),
            *("--subprocesses", "--format", form),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # it attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # writes the flame graph
        spy.wait(timeout=60)


async def loadbell_arm(
    workdir: Path,
    receiver: ReceiverProcess,
    session: aiohttp.ClientSession,
    *,
    count: int,
    warm: int,
    in_flight: int,
    label: str,
    spy: Path | None,
    serve_args: tuple[str, ...] = (),
    external_worker: bool = False,
) -> tuple[ArmResult, PatchTally]:
    async with databases.scratch_database("sqlite", workdir, label) as url:
        settings = _settings(url, workdir)
        token = await databases.seed(settings)
        run_ids = await prepare_runs(settings, warm + count)
        if external_worker:
            serve_args = ("--no-worker", *serve_args)
        server = ServerProcess(settings, free_port(), workdir / f"{label}.log", serve_args)
        await server.start(session)
        api = f"{server.url}/api/v1"
        worker = (
            _start_worker(settings, workdir / f"{label}-worker.log") if external_worker else None
        )
        try:
            await add_channel(
                session,
                api,
                token,
                "bench api path",
                {"url": f"{receiver.url}/latency", "format": "loadimpact"},
            )
            await receiver.reset(session)
            await _patch_all(session, api, token, run_ids[:warm], in_flight)
            await wait_for_arrivals(receiver, session, warm, peers.ARRIVAL_TIMEOUT)
            await asyncio.sleep(0.2)  # the warm-up's results are written
            await receiver.reset(session)
            with _py_spy(spy, server.pid):
                cpu0, own0 = tree_cpu(server.pid), own_cpu(server.pid)
                worker0 = tree_cpu(worker.pid) if worker is not None else 0.0
                t0 = time.time()
                tally = await _patch_all(session, api, token, run_ids[warm:], in_flight)
                arrived, last = await wait_for_arrivals(
                    receiver, session, count, peers.ARRIVAL_TIMEOUT
                )
                await asyncio.sleep(0.1)  # the last results are written (50 ms batches)
                cpu, own = tree_cpu(server.pid) - cpu0, own_cpu(server.pid) - own0
                worker_cpu = tree_cpu(worker.pid) - worker0 if worker is not None else 0.0
        except Exception:
            click.echo(server.log.read_text()[-4000:], err=True)
            raise
        finally:
            await server.stop()
            if worker is not None:
                worker.terminate()  # it flushes its results and exits
                worker.wait(timeout=30)
    errors = tally.errors + (count - arrived)
    facts = {
        "PATCH p50 ms": report.percentile(tally.latencies, 50) * 1000,
        "PATCH p99 ms": report.percentile(tally.latencies, 99) * 1000,
        "503s (sent again)": float(tally.overloaded),
    }
    # serve's own; the worker's is the rest: serve's worker process, or --external-worker's.
    # With --worker inline or none there is no rest, and no worker figure to give. An
    # external worker's figure is given even when it is 0: CPU time comes in ticks of
    # 10 ms, which a short run's worker may not reach.
    cpu += worker_cpu
    facts["serve CPU ms"] = own / count * 1000
    if cpu > own or worker is not None:
        facts["worker CPU ms"] = (cpu - own) / count * 1000
    note = "; ".join(f"{k} {v:.1f}" for k, v in facts.items())
    result = ArmResult("loadbell serve (SQLite)", arrived, last - t0, cpu, errors, note, facts)
    return result, tally


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``loadbell worker`` on the same database, output kept in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "loadbell.cli", "worker"],
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@dataclass
class Rounds:
    arms: dict[str, list[ArmResult]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    loads: list[tuple[float, float, float]] = field(default_factory=list)

    def add(self, key: str, result: ArmResult) -> None:
        self.arms.setdefault(key, []).append(result)

    def ratios(self, peer: str) -> list[float]:
        """loadbell / peer per round (the two were measured minutes apart at most)."""
        ours, theirs = self.arms.get("loadbell", []), self.arms.get(peer, [])
        return [
            a.per_second / b.per_second for a, b in zip(ours, theirs, strict=False) if b.per_second
        ]


def _span(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    low, high, mid = min(values), max(values), statistics.median(values)
    if len(values) == 1:
        return format(mid, fmt)
    return f"{format(low, fmt)}–{format(high, fmt)} (median {format(mid, fmt)})"


def summary(rounds: Rounds, command: str, machine: report.Machine, count: int) -> str:
    loads = [lo[0] for lo in rounds.loads]
    lines = [
        *report.measured_with(
            command,
            machine,
            load=f"load average (1 min) {_span(loads, '.2f')} at the start of the rounds; "
            "shared with other work, so the rates move with it (CPU per notification moves less).",
        ),
        f"- {count:,} timed notifications per arm and round; client, servers, receiver and "
        "Redis on the same machine.",
        "",
        "| Arm | Notifications/s | CPU per notification | Notes |",
        "|---|---|---|---|",
    ]
    for key in ARMS:
        if key in rounds.skipped:
            lines.append(f"| {key} | skipped | | {rounds.skipped[key]} |")
            continue
        results = rounds.arms.get(key, [])
        if not results:
            continue
        notes = "; ".join(
            f"{k} {_span([r.facts[k] for r in results], _FORMATS.get(k, ',.1f'))}"
            for k in results[0].facts
        )
        errors = sum(r.errors for r in results)
        notes = (notes + "; " if notes else "") + f"{errors} errors or missing"
        lines.append(
            f"| {results[0].name} | {_span([r.per_second for r in results], ',.0f')} | "
            f"{_span([r.cpu_ms for r in results], '.2f')} ms | {notes} |"
        )
    lines.append("")
    best = max((r.per_second for r in rounds.arms.get("loadbell", [])), default=0.0)
    target = "met" if best >= TARGET_RATE else "**not met**"
    lines.append(
        f"- loadbell, best round: {best:,.0f}/s (target ≥ {TARGET_RATE:,.0f}/s: {target})."
    )
    for peer, name in (("apprise", "Apprise"), ("celery", "Celery + Redis")):
        ratios = rounds.ratios(peer)
        if ratios:
            ok = "met" if min(ratios) >= TARGET_RATIO else "**not met**"
            lines.append(
                f"- loadbell / {name}, round by round: {_span(ratios, '.2f')}× "
                f"(target ≥ {TARGET_RATIO}× in every round: {ok})."
            )
    return "\n".join(lines)


async def _bench(
    workdir: Path,
    receiver: ReceiverProcess,
    *,
    arms: list[str],
    rounds_n: int,
    count: int,
    warm: int,
    in_flight: int,
    celery_concurrency: int,
    spy: Path | None,
    serve_args: tuple[str, ...] = (),
    external_worker: bool = False,
) -> Rounds:
    rounds = Rounds()
    for key, missing in (("apprise", peers.apprise_missing), ("celery", peers.celery_missing)):
        if key in arms and (reason := missing()) is not None:
            rounds.skipped[key] = reason
            click.echo(f"{key}: skipped: {reason}", err=True)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=in_flight),
    ) as session:
        for n in range(rounds_n):
            rounds.loads.append(os.getloadavg())
            runs: dict[str, Callable[[], Awaitable[ArmResult]]] = {}

            async def ours(n: int = n) -> ArmResult:
                result, _ = await loadbell_arm(
                    workdir,
                    receiver,
                    session,
                    count=count,
                    warm=warm,
                    in_flight=in_flight,
                    label=f"round{n}",
                    spy=spy if n == 0 else None,
                    serve_args=serve_args,
                    external_worker=external_worker,
                )
                return result

            runs["loadbell"] = ours
            runs["apprise"] = lambda: peers.apprise_arm(receiver, session, count, warm)
            runs["celery"] = lambda: peers.celery_arm(
                receiver, session, count, warm, celery_concurrency
            )
            for key in ARMS:
                if key not in arms or key in rounds.skipped:
                    continue
                result = await runs[key]()
                rounds.add(key, result)
                click.echo(
                    f"round {n + 1} {key:9} {result.per_second:8,.0f}/s  "
                    f"{result.cpu_ms:6.2f} ms CPU/notification  {result.count:,} in "
                    f"{result.seconds:.2f} s  errors {result.errors}  {result.note}  "
                    f"(load {os.getloadavg()[0]:.2f})",
                    err=True,
                )
    return rounds


@click.command()
@click.option("--count", default=5000, show_default=True, help="Timed notifications per arm.")
@click.option("--warm", default=300, show_default=True, help="Untimed notifications first.")
@click.option("--in-flight", default=32, show_default=True, help="loadbell's PATCHes under way.")
@click.option("--rounds", "rounds_n", default=3, show_default=True, help="Rounds of every arm.")
@click.option(
    "--arms",
    default=",".join(ARMS),
    show_default=True,
    help="Which arms to run, comma-separated.",
)
@click.option(
    "--celery-concurrency",
    default=os.cpu_count() or 2,
    show_default=True,
    help="Celery worker processes (prefork).",
)
@click.option(
    "--py-spy",
    "spy",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Record serve with py-spy during round 1 into this SVG.",
)
@click.option(
    "--serve-args",
    default="",
    help='More options for serve\'s command line, e.g. "--no-worker".',
)
@click.option(
    "--external-worker",
    is_flag=True,
    help="serve --no-worker and one `loadbell worker` process beside it.",
)
@report.docs_options
def main(
    count: int,
    warm: int,
    in_flight: int,
    rounds_n: int,
    arms: str,
    celery_concurrency: int,
    spy: Path | None,
    serve_args: str,
    external_worker: bool,
    write_docs: bool,
    docs_path: Path,
) -> None:
    """Notifications/s from PATCH /runs/{id} to the receiver, beside Apprise and Celery."""
    chosen = [a.strip() for a in arms.split(",") if a.strip()]
    if unknown := set(chosen) - set(ARMS):
        raise click.UsageError(f"unknown arms: {', '.join(sorted(unknown))}")
    command = (
        f"python -m bench.api_path --count {count} --in-flight {in_flight} "
        f"--rounds {rounds_n} --arms {','.join(chosen)}"
        + (f" --serve-args {shlex.quote(serve_args)}" if serve_args else "")
        + (" --external-worker" if external_worker else "")
        + (" --write-docs" if write_docs else "")
    )
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-api-path-"))
    receiver = ReceiverProcess(free_port()).start()
    try:
        machine = report.Machine.describe(_sqlite_version())
        coro = _bench(
            workdir,
            receiver,
            arms=chosen,
            rounds_n=rounds_n,
            count=count,
            warm=warm,
            in_flight=in_flight,
            celery_concurrency=celery_concurrency,
            spy=spy,
            serve_args=tuple(shlex.split(serve_args)),
            external_worker=external_worker,
        )
        rounds = loop.run(coro)
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    text = summary(rounds, command, machine, count)
    click.echo(text)
    if write_docs:
        report.write_block("api-path", text, docs_path)
        click.echo(f"\nwritten to {docs_path}")


def _sqlite_version() -> str:
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version}"


if __name__ == "__main__":
    sys.exit(main())
