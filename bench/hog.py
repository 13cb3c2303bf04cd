"""A busy machine: ``loadbell serve`` at a steady rate while CPU hogs run beside it.

    python -m bench.hog [--rate 200] [--before 20] [--hog-seconds 90] [--after 60]
                        [--hogs N] [--layout process|inline|split] [--write-docs]

``loadbell serve`` runs as a child process on a scratch SQLite file with one webhook
channel that subscribes to ``test.started``, pointed at ``bench/receiver.py``. An open-loop
client (request i is sent at t0 + i/rate whatever happened to the others; no connection
limit, a 30 s timeout as the issue's clients had) sends ``PATCH /runs/{id} {"status": 2}``
to runs made beforehand, for ``--before`` seconds on a quiet machine, ``--hog-seconds`` with
``--hogs`` processes spinning in pure Python beside it (one per core by default), and
``--after`` seconds once they are gone. Then it waits up to ``--after`` seconds more for the
backlog to drain.

Every second it samples the **due backlog** (deliveries pending and due: with a receiver that
always answers 204 there are no retries, so every pending delivery is due), the deliveries
the receiver got, serve's CPU and the load average. Every PATCH answer is classed as 200,
503 ``overloaded`` (admission), 503 ``unavailable`` (a database wait ran out: the pool or
the lock), another status, or a client timeout; latency is from the *scheduled* send time.

``--layout process`` (the default) is ``serve`` as it starts by default, its worker in a
child process; ``--layout inline`` keeps the worker in ``serve``'s event loop (``serve
--worker inline``; the layout was called ``inproc`` when that was the default).
``--layout split`` runs ``serve --no-worker`` and a ``loadbell worker`` process instead.
With ``--stop-worker`` the worker process is also stopped (SIGTERM, a graceful stop) for the
hog phase and a new one started after it: no worker delivers while the API process is on
time, which is what the due backlog bound (``LOADBELL_MAX_DUE_BACKLOG``) is for. (A SIGSTOP
instead could freeze the worker inside a transaction, and the API would then wait for
SQLite's write lock: a different failure.) Serve's CPU is then serve's alone.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import click

from bench import databases, loop, options, report
from bench.deliveries import PUBLIC_URL, SECRET, free_port
from bench.latency import ServerProcess, add_channel, prepare_runs, settings_env
from bench.proc_cpu import tree_cpu
from bench.receiver import ROOT, ReceiverProcess
from bench.report import SHARED, measured_with, percentile
from loadbell.settings import Settings
from loadbell.store.db import sqlite_path

CLIENT_TIMEOUT = 30.0  # seconds, as the clients of the issue had
HOG = "while True: pass"  # one core's worth of pure-Python spinning


@dataclass
class Second:
    """What one second of the run saw (by the scheduled send time of its requests)."""

    phase: str
    backlog: int = 0  # due deliveries at the sample
    delivered: int = 0  # requests the receiver got during the second
    serve_cpu: float = 0.0  # CPU seconds of serve (and its worker) during the second
    load: float = 0.0  # 1-minute load average at the sample
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    ok: list[float] = field(default_factory=list)  # seconds, 200 answers
    refused: list[float] = field(default_factory=list)  # seconds, 503 answers


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes and their descendants (serve's worker process)."""
    return sum(tree_cpu(pid) for pid in pids)


class WorkerProcess:
    """``python -m loadbell.cli worker`` with the bench's settings, output in ``log``."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        with self.log.open("ab") as out:
            self.proc = _spawn(
                [sys.executable, "-m", "loadbell.cli", "worker"],
                cwd=ROOT,
                env=settings_env(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM: the worker hands back what it holds and exits (docs/architecture.md)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)


def _spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """A child process; starting one takes a millisecond, so the loop may wait for it."""
    return subprocess.Popen(args, **kwargs)


class Run:
    def __init__(self, rate: float, before: float, hog: float, after: float) -> None:
        self.rate = rate
        self.phases = [("before", before), ("hog", hog), ("after", after)]
        self.length = before + hog + after
        self.seconds = [Second(self.phase_at(i)) for i in range(int(self.length) + 1)]
        self.drain_seconds: list[Second] = []  # sampled after the last request, until empty
        self.recovered_after: float | None = None  # seconds after the hog stopped

    def phase_at(self, t: float) -> str:
        for name, length in self.phases:
            if t < length:
                return name
            t -= length
        return "after"

    def slot(self, t: float) -> Second:
        return self.seconds[min(int(t), len(self.seconds) - 1)]


async def _send(
    session: aiohttp.ClientSession, api: str, token: str, run_ids: list[int], run: Run
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(run_id: int, due: float) -> None:
        second = run.slot(due - start)
        try:
            async with session.patch(
                f"{api}/runs/{run_id}", headers=auth, json={"status": 2}
            ) as resp:
                body = await resp.json() if resp.content_type == "application/json" else {}
                status = resp.status
        except TimeoutError:
            second.answers["timeout"] += 1
            return
        except aiohttp.ClientError as exc:
            second.answers[exc.__class__.__name__] += 1
            return
        took = loop.time() - due
        if status == 200:
            second.answers["200"] += 1
            second.ok.append(took)
        elif status == 503:
            second.answers[f"503 {body.get('error')}"] += 1
            second.refused.append(took)
        else:
            second.answers[str(status)] += 1

    tasks = []
    for i, run_id in enumerate(run_ids):
        due = start + i / run.rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(run_id, due)))
    await asyncio.gather(*tasks)


async def _sample(
    session: aiohttp.ClientSession,
    receiver: ReceiverProcess,
    database: str,
    pids: list[int],
    run: Run,
    sending: asyncio.Task[None],
    hogs: int,
    paused: WorkerProcess | None,
) -> None:
    """Once a second: backlog, deliveries, CPU; hogs started and stopped on schedule; after
    the last request, until the backlog is empty (or ``after`` more seconds)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    procs: list[subprocess.Popen[bytes]] = []
    before, hog_seconds, after = (length for _, length in run.phases)
    hogging = False
    try:
        t0 = time.monotonic()
        delivered = (await receiver.stats(session)).count
        cpu = _cpu_seconds(pids)
        i = 0
        while True:
            i += 1
            await asyncio.sleep(max(0.0, t0 + i - time.monotonic()))
            t = time.monotonic() - t0
            if not hogging and before <= t < before + hog_seconds:
                hogging = True
                procs = [_spawn([sys.executable, "-c", HOG]) for _ in range(hogs)]
                if paused is not None:
                    await asyncio.to_thread(paused.stop)
            if hogging and t >= before + hog_seconds:
                hogging = False
                for p in procs:
                    p.kill()
                    p.wait()
                procs = []
                if paused is not None:
                    paused.start()
            if i <= len(run.seconds) and not sending.done():
                second = run.seconds[i - 1]
            else:
                second = Second("drain")
                run.drain_seconds.append(second)
            second.backlog = conn.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'"
            ).fetchone()[0]
            now_delivered = (await receiver.stats(session)).count
            second.delivered, delivered = now_delivered - delivered, now_delivered
            now_cpu = _cpu_seconds(pids)
            second.serve_cpu, cpu = now_cpu - cpu, now_cpu
            second.load = os.getloadavg()[0]
            if run.recovered_after is None and t > before + hog_seconds:
                quiet = max((s.backlog for s in run.seconds[: int(before)]), default=0)
                if second.backlog <= max(quiet, 20):
                    run.recovered_after = t - before - hog_seconds
            if sending.done() and (second.backlog == 0 or len(run.drain_seconds) >= after):
                return
    finally:
        for p in procs:
            p.kill()
            p.wait()
        conn.close()


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: list[Second]

    def figures(self) -> dict[str, Any]:
        s = self.seconds
        answers: collections.Counter[str] = collections.Counter()
        for x in s:
            answers.update(x.answers)
        ok = [v * 1000 for x in s for v in x.ok]
        refused = [v * 1000 for x in s for v in x.refused]
        n = max(len(s), 1)
        return {
            "sent": sum(answers.values()),
            "answers": answers,
            "ok_p50": percentile(ok, 50),
            "ok_p99": percentile(ok, 99),
            "refused_p50": percentile(refused, 50),
            "refused_p99": percentile(refused, 99),
            "delivered_per_s": sum(x.delivered for x in s) / n,
            "backlog_max": max((x.backlog for x in s), default=0),
            "backlog_end": s[-1].backlog if s else 0,
            "cpu": sum(x.serve_cpu for x in s) / n,
            "load": max((x.load for x in s), default=0.0),
        }


@dataclass(frozen=True)
class Result:
    run: Run
    layout: str
    hogs: int
    stop_worker: bool
    command: str
    machine: report.Machine
    settings: Settings

    def phases(self) -> list[Phase]:
        out = [
            Phase(name, [x for x in self.run.seconds if x.phase == name])
            for name, _ in self.run.phases
        ]
        return [*out, Phase("drain", self.run.drain_seconds)]

    def rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for phase in self.phases():
            if not phase.seconds:
                continue
            f = phase.figures()
            a = f["answers"]
            other = {k: v for k, v in a.items() if k not in ("200", "503 overloaded")}
            rows.append(
                (
                    f"{phase.name} ({len(phase.seconds)} s)",
                    f"{f['sent']:,}",
                    f"{a['200']:,}",
                    f"{a['503 overloaded']:,}",
                    ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "0",
                    f"{f['ok_p50']:.1f} / {f['ok_p99']:.1f}",
                    f"{f['refused_p50']:.1f} / {f['refused_p99']:.1f}",
                    f"{f['delivered_per_s']:.0f}",
                    f"{f['backlog_max']:,} / {f['backlog_end']:,}",
                    f"{f['cpu'] * 100:.0f} %",
                    f"{f['load']:.1f}",
                )
            )
        return rows

    HEAD = (
        "phase",
        "PATCH sent",
        "200",
        "503 overloaded",
        "other answers",
        "200 p50 / p99 ms",
        "503 p50 / p99 ms",
        "delivered/s",
        "due backlog max / end",
        "serve CPU",
        "load max",
    )

    def timeline(self, every: int = 5) -> str:
        lines = []
        seconds = self.run.seconds + self.run.drain_seconds
        for start in range(0, len(seconds), every):
            chunk = seconds[start : start + every]
            answers: collections.Counter[str] = collections.Counter()
            for x in chunk:
                answers.update(x.answers)
            ok = [v * 1000 for x in chunk for v in x.ok]
            lines.append(
                f"{start:4d}s {chunk[0].phase:6s} backlog {chunk[-1].backlog:6,}  "
                f"delivered {sum(x.delivered for x in chunk) / len(chunk):5.0f}/s  "
                f"200 {answers['200']:5,} 503 {answers['503 overloaded']:5,} "
                f"other {sum(answers.values()) - answers['200'] - answers['503 overloaded']:4,}"
                f"  p99 {percentile(ok, 99):8.1f} ms  cpu "
                f"{sum(x.serve_cpu for x in chunk) / len(chunk) * 100:3.0f} %  "
                f"load {chunk[-1].load:4.1f}"
            )
        return "\n".join(lines)

    def recovery(self) -> str:
        r = self.run.recovered_after
        return (
            "did not recover within the run"
            if r is None
            else f"back to the quiet level {r:.0f} s after the hogs stopped"
        )

    def summary(self) -> str:
        rows = [self.HEAD, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEAD))]
        table = "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)) for r in rows)
        return f"{table}\n\ndue backlog: {self.recovery()}\n\n{self.timeline()}"

    def markdown(self) -> str:
        s = self.settings
        return "\n".join(
            [
                *measured_with(self.command, self.machine, after_load=SHARED),
                f"- Layout `{self.layout}`; {self.hogs} hog processes"
                f"{'; no worker process meanwhile' if self.stop_worker else ''}; "
                f"`LOADBELL_MAX_IN_FLIGHT={s.max_in_flight}`, "
                f"`LOADBELL_MAX_LOOP_LAG_MS={s.max_loop_lag_ms}`, "
                f"`LOADBELL_MAX_DUE_BACKLOG={getattr(s, 'max_due_backlog', 'n/a')}`.",
                "",
                "| " + " | ".join(self.HEAD) + " |",
                "|" + "---|" * len(self.HEAD),
                *("| " + " | ".join(r) + " |" for r in self.rows()),
                "",
                f"Due backlog: {self.recovery()}. Every 5 s:",
                "",
                "```text",
                self.timeline(),
                "```",
            ]
        )


async def _bench(
    workdir: Path,
    *,
    rate: float,
    before: float,
    hog: float,
    after: float,
    hogs: int,
    layout: str,
    stop_worker: bool,
    command: str,
) -> Result:
    receiver = ReceiverProcess(free_port()).start()
    worker: WorkerProcess | None = None
    try:
        async with databases.scratch_database("sqlite", workdir, "hog") as url:
            settings = Settings(
                database_url=url,
                secret_key=SECRET,
                secret_key_file=workdir / "unused.key",
                public_url=PUBLIC_URL,
                allow_private_targets=True,  # the receiver is on 127.0.0.1
            )
            machine = report.Machine.describe(await databases.server_version(settings))
            token = await databases.seed(settings)
            run = Run(rate, before, hog, after)
            run_ids = await prepare_runs(settings, round(rate * run.length))
            extra = ("--no-worker",) if layout == "split" else ("--worker", layout)
            server = ServerProcess(settings, free_port(), workdir / "serve.log", extra)
            connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue in the client
            timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await server.start(session)
                try:
                    api = f"{server.url}/api/v1"
                    await add_channel(
                        session,
                        api,
                        token,
                        "bench hog",
                        {"url": f"{receiver.url}/drain", "format": "loadimpact"},
                    )
                    pids = [server.pid]
                    if layout == "split":
                        worker = WorkerProcess(settings, workdir / "worker.log")
                        pid = worker.start()
                        if not stop_worker:  # a restarted worker has another pid
                            pids.append(pid)
                    click.echo(
                        f"{len(run_ids):,} PATCHes at {rate:g}/s: {before:g} s quiet, "
                        f"{hog:g} s with {hogs} hogs, {after:g} s after ...",
                        err=True,
                    )
                    sending = asyncio.create_task(_send(session, api, token, run_ids, run))
                    paused = worker if stop_worker else None
                    await _sample(
                        session, receiver, sqlite_path(url), pids, run, sending, hogs, paused
                    )
                    await sending
                except Exception:
                    click.echo(server.log.read_text()[-4000:], err=True)
                    raise
                finally:
                    if worker is not None:
                        worker.stop()
                    await server.stop()
    finally:
        receiver.stop()
    return Result(run, layout, hogs, stop_worker, command, machine, settings)


@click.command()
@options.rate_option(help="PATCHes (events) per second.")
@click.option("--before", default=20.0, show_default=True, help="Seconds before the hogs.")
@click.option("--hog-seconds", default=90.0, show_default=True, help="Seconds with the hogs.")
@click.option(
    "--after", default=60.0, show_default=True, help="Seconds of load after the hogs stop."
)
@click.option(
    "--hogs",
    type=click.IntRange(min=0),
    default=os.cpu_count() or 1,
    show_default=True,
    help="Spinning processes during the hog phase (default: one per core).",
)
@click.option(
    "--layout",
    type=click.Choice(["process", "inline", "split"]),
    default="process",
    show_default=True,
    help="process: `loadbell serve` as it starts by default (its worker in a child "
    "process); inline: `serve --worker inline`; split: `serve --no-worker` and a "
    "`loadbell worker` process.",
)
@click.option(
    "--stop-worker",
    is_flag=True,
    help="With --layout split: no worker runs during the hog phase (SIGTERM, then a new "
    "one after it).",
)
@report.docs_options
def main(
    rate: float,
    before: float,
    hog_seconds: float,
    after: float,
    hogs: int,
    layout: str,
    stop_worker: bool,
    write_docs: bool,
    docs_path: Path,
) -> None:
    """serve at a steady rate with CPU hogs beside it: the due backlog, second by second."""
    if rate <= 0 or before < 1 or hog_seconds < 0 or after < 1:
        raise click.UsageError("--rate must be > 0, --before and --after at least 1 s")
    if stop_worker and layout != "split":
        raise click.UsageError("--stop-worker needs --layout split")
    command = " ".join(["python -m bench.hog", *sys.argv[1:]])
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-hog-"))
    try:
        result = loop.run(
            _bench(
                workdir,
                rate=rate,
                before=before,
                hog=hog_seconds,
                after=after,
                hogs=hogs,
                layout=layout,
                stop_worker=stop_worker,
                command=command,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(result.summary())
    if write_docs:
        name = f"hog:{layout}{':stop-worker' if stop_worker else ''}"
        report.write_block(name, result.markdown(), docs_path)
        click.echo(f"\nwritten to {docs_path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
