"""Soak: does ``loadbell serve`` keep a flat memory under a steady load?

    python -m bench.soak [--minutes 30] [--settle-minutes 5] [--rate 200]
                         [--db sqlite|postgresql] [--tracemalloc DIR] [--write-docs]

``loadbell serve`` runs as a child process (API and its worker) with one webhook channel
(format ``template``) that subscribes to every run event; ``bench/receiver.py`` answers the
deliveries. An open-loop client (request i is due at t0 + i/rate, whatever happened to the
others) sends what a load-test tool sends over a run's life, so that per-run state is made
and should be let go: ``POST /runs`` (with an ``Idempotency-Key``), ``PATCH`` to Running,
two intermediate reports, a threshold failure, ``PATCH`` to Finished and
``report-available``. Each run takes 7 requests. Most runs reuse one of 20 load tests;
every 50th run makes a new one. A request answered 503 (admission) is sent again later.

Every 10 s the bench reads ``VmRSS`` from ``/proc/<pid>/status`` of ``serve`` and of every
process under it (``serve`` may run its worker in a child process), and the load average.
It reports RSS at the end of the settle time (5 min) and at the end, the difference
(target: at most 15 MB), and the slope (least squares, MB/min) over the samples after the
settle time.

``--tracemalloc DIR`` runs ``serve`` through ``bench/traced_serve.py`` (tracemalloc on,
snapshots on SIGUSR1; nothing of it ships in loadbell) and prints what grew between the
end of the settle time and the end: the allocation sites, and the object counts by type.
It slows the server down; its RSS figures are not the soak's.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import click

from bench import databases, loop, options, report
from bench.deliveries import PUBLIC_URL, SECRET, free_port
from bench.latency import ServerProcess, add_channel
from bench.receiver import ReceiverProcess
from loadbell.settings import Settings

TARGET_MB = 15.0  # RSS at the end minus RSS after the settle time
SAMPLE_SECONDS = 10.0
CLIENT_TIMEOUT = 30.0  # seconds
EVENTS = [
    "test.started",
    "test.finished",
    "test.report_intermediate",
    "test.threshold_failed",
    "test.report_available",
]
TEMPLATE = (
    '{"summary": {{ summary.text | tojson }}, "severity": {{ summary.severity | tojson }}, '
    '"link": {{ summary.link | tojson }}}'
)
REPORT = {"metrics": {"requests": 1200, "rps": 40.0, "avg_ms": 81.5, "p95_ms": 190.0, "vus": 20}}
# The life of one run, after its POST /runs: (method, path under /runs/{id}, body).
STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("PATCH", "", {"status": 2}),
    ("POST", "/reports", REPORT),
    ("POST", "/reports", REPORT),
    ("POST", "/threshold-failures", {"metric": "http_req_duration", "expression": "p(95)<150"}),
    ("PATCH", "", {"status": 3}),
    ("POST", "/report-available", {}),
]


# --- RSS of a process tree, from /proc ------------------------------------------------------


def rss_kb(pid: int) -> int:
    """VmRSS of one process in KiB (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the ppid follows the ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, []))
    return sorted(out)


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the load began
    serve_kb: int
    children_kb: dict[int, int]  # pid -> VmRSS
    load1: float
    requests: int  # answered so far
    delivered: int  # requests the receiver got so far

    @property
    def total_mb(self) -> float:
        return (self.serve_kb + sum(self.children_kb.values())) / 1024

    @property
    def serve_mb(self) -> float:
        return self.serve_kb / 1024

    @property
    def children_mb(self) -> float:
        return sum(self.children_kb.values()) / 1024


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return float("nan")
    cov = sum((t - mean_t) * (y - mean_y) for t, y in points)
    return cov / var * 60


# --- the client ------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    posts: int = 0  # POST /runs sent
    runs_created: int = 0
    runs_finished: int = 0
    slowest: float = 0.0  # seconds, from the scheduled send
    late: int = 0  # answers more than 1 s after their scheduled send


class Lifecycle:
    """The open-loop client: new runs, and runs it created waiting for their next step."""

    def __init__(self, session: aiohttp.ClientSession, api: str, token: str) -> None:
        self.session = session
        self.api = api
        self.auth = {"Authorization": f"Bearer {token}"}
        self.ready: collections.deque[tuple[int, int]] = collections.deque()  # (run, step)
        self.tally = Tally()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, rate: float, seconds: float, started: float) -> None:
        loop = asyncio.get_running_loop()
        count = max(1, round(rate * seconds))
        for i in range(count):
            due = started + i / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(i, due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def _one(self, i: int, due: float) -> None:
        # About one request in 7 makes a run, so that runs go through their whole life and
        # the number under way stays about constant; with none ready, the slot makes one.
        new = i % (len(STEPS) + 1) == 0 or not self.ready
        if new:
            self.tally.posts += 1
            method, url = "POST", f"{self.api}/runs"
            number = self.tally.posts
            name = f"soak-{number % 20}" if number % 50 else f"soak-new-{number}"
            body: dict[str, Any] = {"project_id": 1, "load_test_name": name}
            headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
            run, step = 0, -1
        else:
            run, step = self.ready.popleft()
            method, path, body = STEPS[step]
            url, headers = f"{self.api}/runs/{run}{path}", self.auth
        self.tally.sent += 1
        loop = asyncio.get_running_loop()
        try:
            async with self.session.request(method, url, json=body, headers=headers) as resp:
                answer = await resp.json() if resp.content_type == "application/json" else {}
                status = resp.status
        except TimeoutError:
            self.tally.errors["client timeout"] += 1
            return
        except aiohttp.ClientError as exc:
            self.tally.errors[exc.__class__.__name__] += 1
            return
        took = loop.time() - due
        self.tally.slowest = max(self.tally.slowest, took)
        self.tally.late += took > 1.0
        if status == 503:
            self.tally.errors["503"] += 1
            if not new:
                self.ready.append((run, step))  # a client sends it again later
            return
        if status >= 300:
            self.tally.errors[f"{method} {status} {answer.get('error')}"] += 1
            return
        self.tally.answered += 1
        if new:
            self.tally.runs_created += 1
            self.ready.append((int(answer["id"]), 0))
        elif step + 1 < len(STEPS):
            self.ready.append((run, step + 1))
        else:
            self.tally.runs_finished += 1


# --- tracemalloc, through bench/traced_serve.py ----------------------------------------------


class Tracer:
    """Asks the traced ``serve`` for snapshots (SIGUSR1) and diffs two of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.taken = 0

    async def snapshot(self, pid: int) -> Path:
        self.taken += 1
        path = self.folder / f"snapshot-{self.taken}.pickle"
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline:  # noqa: ASYNC110 (a file)
            await asyncio.sleep(0.5)
        if not path.exists():
            raise RuntimeError(f"serve wrote no snapshot to {path}")
        return path

    @staticmethod
    def diff(first: Path, second: Path, top: int = 25) -> str:
        with first.open("rb") as f:
            a = pickle.load(f)
        with second.open("rb") as f:
            b = pickle.load(f)
        lines = [
            f"SQLite's heap (sqlite3_memory_used): {a['sqlite'] / 2**20:.1f} -> "
            f"{b['sqlite'] / 2**20:.1f} MB; Python's traced memory: "
            f"{_traced(a['memory']) / 2**20:.1f} -> {_traced(b['memory']) / 2**20:.1f} MB",
            "allocation sites that grew (tracemalloc, lineno):",
        ]
        stats = b["memory"].compare_to(a["memory"], "lineno")
        for stat in stats[:top]:
            lines.append(f"  {stat}")
        lines.append("by traceback, the 5 largest growths:")
        for stat in b["memory"].compare_to(a["memory"], "traceback")[:5]:
            lines.append(f"  {stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks")
            lines.extend(f"    {line}" for line in stat.traceback.format()[-12:])
        lines.append("object counts by type that grew (gc.get_objects):")
        grown = collections.Counter(b["types"])
        grown.subtract(a["types"])
        for name, delta in grown.most_common(top):
            if delta <= 0:
                break
            lines.append(f"  {name}: {a['types'].get(name, 0):,} -> {b['types'][name]:,}")
        return "\n".join(lines)


def _traced(snapshot: Any) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename"))


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    backend: str
    command: str
    machine: report.Machine
    rate: float
    minutes: float
    settle_minutes: float
    samples: list[Sample]
    tally: Tally
    traced: bool
    growth: str = ""  # the tracemalloc diff, when traced

    def at(self, seconds: float) -> Sample:
        """The sample nearest to ``seconds`` into the load."""
        return min(self.samples, key=lambda s: abs(s.seconds - seconds))

    @property
    def settled(self) -> Sample:
        return self.at(self.settle_minutes * 60)

    @property
    def end(self) -> Sample:
        return self.samples[-1]

    @property
    def growth_mb(self) -> float:
        return self.end.total_mb - self.settled.total_mb

    def slope(self, which: str = "total_mb") -> float:
        after = [s for s in self.samples if s.seconds >= self.settled.seconds]
        return slope_per_minute([(s.seconds, getattr(s, which)) for s in after])

    def load(self) -> tuple[float, float, float]:
        values = [s.load1 for s in self.samples]
        return min(values), sum(values) / len(values), max(values)

    def rows(self) -> list[tuple[str, str, str]]:
        first, settled, end = self.samples[0], self.settled, self.end
        ok = "met" if self.growth_mb <= TARGET_MB else "**not met**"
        lo, mean, hi = self.load()
        t = self.tally
        return [
            ("RSS after 10 s (serve + children)", f"{first.total_mb:.1f} MB", ""),
            (
                f"RSS at {settled.seconds / 60:.1f} min",
                f"{settled.total_mb:.1f} MB",
                f"serve {settled.serve_mb:.1f} MB, children {settled.children_mb:.1f} MB",
            ),
            (
                f"RSS at {end.seconds / 60:.1f} min",
                f"{end.total_mb:.1f} MB",
                f"serve {end.serve_mb:.1f} MB, children {end.children_mb:.1f} MB",
            ),
            (
                "Difference (end − settled)",
                f"{self.growth_mb:+.1f} MB",
                f"target ≤ {TARGET_MB:g} MB: {ok}",
            ),
            (
                f"Slope after {settled.seconds / 60:.0f} min (least squares)",
                f"{self.slope():+.2f} MB/min",
                f"serve {self.slope('serve_mb'):+.2f}, children {self.slope('children_mb'):+.2f}",
            ),
            ("Highest RSS", f"{max(s.total_mb for s in self.samples):.1f} MB", ""),
            (
                "Requests answered",
                f"{t.answered:,} of {t.sent:,}",
                f"{t.runs_created:,} runs made, {t.runs_finished:,} through their whole life; "
                f"errors {dict(t.errors) or 0}",
            ),
            (
                "Deliveries received",
                f"{end.delivered:,}",
                f"{end.delivered / max(end.seconds, 1e-9):.0f}/s",
            ),
            (
                "Slowest answer from its scheduled send",
                f"{t.slowest * 1000:.0f} ms",
                f"{t.late:,} later than 1 s",
            ),
            ("Load average (1 min) during the run", f"{mean:.2f}", f"min {lo:.2f}, max {hi:.2f}"),
        ]

    def curve(self) -> str:
        """One line per minute."""
        lines = []
        next_minute = 0.0
        for s in self.samples:
            if s.seconds + 1e-6 >= next_minute * 60:
                children = " ".join(f"{pid}:{kb / 1024:.1f}" for pid, kb in s.children_kb.items())
                lines.append(
                    f"{s.seconds / 60:5.1f} min  {s.total_mb:6.1f} MB  (serve {s.serve_mb:6.1f}"
                    f"{'; ' + children if children else ''})  load {s.load1:.2f}"
                )
                next_minute += 1
        return "\n".join(lines)

    def table(self) -> str:
        return "\n".join(f"{a}: {b}  {c}".rstrip() for a, b, c in self.rows())

    def markdown(self) -> str:
        return "\n".join(
            [
                *report.measured_with(
                    self.command, self.machine, after_load=" (shared with other work)."
                ),
                f"- {self.rate:g} requests/s for {self.minutes:g} min; client, receiver, server "
                "and database on the same machine.",
                "",
                "| Measure | Value | Notes |",
                "|---|---|---|",
                *(f"| {a} | {b} | {c} |" for a, b, c in self.rows()),
                "",
                "RSS minute by minute:",
                "",
                "```text",
                self.curve(),
                "```",
            ]
        )


async def _sample_loop(
    server_pid: int,
    receiver: ReceiverProcess,
    session: aiohttp.ClientSession,
    client: Lifecycle,
    started: float,
    samples: list[Sample],
) -> None:
    loop = asyncio.get_running_loop()
    n = 1
    while True:
        if (delay := started + n * SAMPLE_SECONDS - loop.time()) > 0:
            await asyncio.sleep(delay)
        children = {pid: rss_kb(pid) for pid in descendants(server_pid)}
        try:
            delivered = (await receiver.stats(session)).count
        except (aiohttp.ClientError, TimeoutError):
            delivered = samples[-1].delivered if samples else 0
        sample = Sample(
            seconds=loop.time() - started,
            serve_kb=rss_kb(server_pid),
            children_kb=children,
            load1=os.getloadavg()[0],
            requests=client.tally.answered,
            delivered=delivered,
        )
        samples.append(sample)
        if n % 6 == 0:
            click.echo(
                f"  {sample.seconds / 60:5.1f} min: RSS {sample.total_mb:6.1f} MB "
                f"(serve {sample.serve_mb:.1f}, children {sample.children_mb:.1f}); "
                f"{sample.requests:,} answered of {client.tally.sent:,} sent "
                f"({sum(client.tally.errors.values()):,} errors), {sample.delivered:,} delivered; "
                f"load {sample.load1:.2f}",
                err=True,
            )
        n += 1


async def _bench(
    backend: str,
    workdir: Path,
    receiver: ReceiverProcess,
    *,
    rate: float,
    minutes: float,
    settle_minutes: float,
    trace_dir: Path | None,
    command: str,
) -> Result:
    async with databases.scratch_database(backend, workdir, "soak") as url:
        settings = Settings(
            database_url=url,
            secret_key=SECRET,
            secret_key_file=workdir / "unused.key",
            allow_private_targets=True,  # the receiver is on 127.0.0.1
            public_url=PUBLIC_URL,
        )
        machine = report.Machine.describe(await databases.server_version(settings))
        token = await databases.seed(settings)
        module = "bench.traced_serve" if trace_dir else "loadbell.cli"
        server = ServerProcess(settings, free_port(), workdir / "serve.log", module=module)
        if trace_dir:
            os.environ["LOADBELL_BENCH_TRACE_DIR"] = str(trace_dir)
        tracer = Tracer(trace_dir) if trace_dir else None
        connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue in the client
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        samples: list[Sample] = []
        growth = ""
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await server.start(session, timeout=120 if trace_dir else 30)
            try:
                api = f"{server.url}/api/v1"
                config = {
                    "url": f"{receiver.url}/soak",
                    "format": "template",  # the one format that expresses them all
                    "template": TEMPLATE,
                }
                await add_channel(session, api, token, "bench soak", config, EVENTS)
                await receiver.reset(session)
                client = Lifecycle(session, api, token)
                loop = asyncio.get_running_loop()
                started = loop.time() + 0.1
                sampler = asyncio.create_task(
                    _sample_loop(server.pid, receiver, session, client, started, samples)
                )
                load = asyncio.create_task(client.run(rate, minutes * 60, started))
                snapshots: list[Path] = []
                if tracer is not None:
                    await asyncio.sleep(max(0.0, started + settle_minutes * 60 - loop.time()))
                    snapshots.append(await tracer.snapshot(server.pid))
                await load
                await asyncio.sleep(SAMPLE_SECONDS + 1)  # one more sample, the last answers in
                sampler.cancel()
                if tracer is not None:
                    snapshots.append(await tracer.snapshot(server.pid))
                    growth = Tracer.diff(snapshots[0], snapshots[-1])
            except Exception:
                click.echo(server.log.read_text()[-4000:], err=True)
                raise
            finally:
                await server.stop()
    return Result(
        backend=backend,
        command=command,
        machine=machine,
        rate=rate,
        minutes=minutes,
        settle_minutes=settle_minutes,
        samples=samples,
        tally=client.tally,
        traced=tracer is not None,
        growth=growth,
    )


@click.command()
@click.option("--minutes", default=30.0, show_default=True, help="How long the load runs.")
@click.option(
    "--settle-minutes",
    default=5.0,
    show_default=True,
    help="The RSS after this long is the baseline; growth and slope are measured after it.",
)
@options.rate_option(help="Requests/s, open loop.")
@options.db_option()
@click.option(
    "--tracemalloc",
    "trace_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Trace serve's allocations; snapshots go to this folder and their diff is printed.",
)
@report.docs_options
def main(
    minutes: float,
    settle_minutes: float,
    rate: float,
    backend: str,
    trace_dir: Path | None,
    write_docs: bool,
    docs_path: Path,
) -> None:
    """RSS of loadbell serve under a steady mixed load, sampled every 10 s."""
    if minutes <= 0 or rate <= 0 or not 0 <= settle_minutes < minutes:
        raise click.UsageError("--minutes and --rate must be > 0, --settle-minutes below --minutes")
    command = " ".join(["python -m bench.soak", *sys.argv[1:]])
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-soak-"))
    receiver = ReceiverProcess(free_port()).start()
    try:
        result = loop.run(
            _bench(
                backend,
                workdir,
                receiver,
                rate=rate,
                minutes=minutes,
                settle_minutes=settle_minutes,
                trace_dir=trace_dir,
                command=command,
            )
        )
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(result.curve())
    click.echo(result.table())
    if result.growth:
        click.echo(result.growth)
    if write_docs:
        if result.traced:
            raise click.ClickException("a traced run's RSS is not the soak's; not written")
        report.write_block(f"soak:{backend}", result.markdown(), docs_path)
        click.echo(f"\nwritten to {docs_path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
