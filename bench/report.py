"""Printing the figures, and writing them into ``docs/benchmarks.md``.

The document is hand-written except for one block per backend, between
``<!-- bench:<backend>:begin -->`` and ``<!-- bench:<backend>:end -->``, which
``--write-docs`` replaces.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from bench.drain import DrainResult
from bench.latency import LatencyResult
from bench.raw import RawResult
from loadbell.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

DRAIN_TARGET = 0.5  # drain rate / raw loop rate
P99_TARGET_MS = 15.0  # API call to first attempt at 200 events/s (issue 9; issue 2 had 50)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    load_at_start: tuple[float, float, float]
    python: str
    database: str
    libraries: str

    @classmethod
    def describe(cls, database: str) -> Machine:
        model = "unknown CPU"
        with_cpuinfo = Path("/proc/cpuinfo")
        if with_cpuinfo.exists():
            found = re.search(r"^model name\s*:\s*(.+)$", with_cpuinfo.read_text(), re.M)
            if found:
                model = found.group(1).strip()
        libs = ", ".join(
            f"{name} {_version(name)}" for name in ("aiohttp", "uvloop", "SQLAlchemy", "uvicorn")
        )
        return cls(
            cpus=os.cpu_count() or 0,
            cpu_model=model,
            load_at_start=os.getloadavg(),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            database=database,
            libraries=libs,
        )


# ``after_load`` for a bench whose machine others use while it runs.
SHARED = " (shared with other work: the figures move with it)."


def loads(values: Iterable[float]) -> str:
    """Load averages as the documents give them: ``1.23, 0.98, 0.75``."""
    return ", ".join(f"{v:.2f}" for v in values)


def measured_with(
    command: str, machine: Machine, *, after_load: str = ".", load: str | None = None
) -> list[str]:
    """The lines a bench's block in docs/benchmarks.md opens with: when it was measured
    (UTC, to the minute), the exact command in a ``sh`` block, the machine with its load
    average, then Python, the database and the libraries.

    The machine line ends "load average at start 1.23, 0.98, 0.75" and ``after_load`` (a
    note, another figure, the full stop); ``load`` takes the place of both for a bench that
    gives its load average another way."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if load is None:
        load = f"load average at start {loads(machine.load_at_start)}{after_load}"
    return [
        f"Measured {when} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"- Machine: {machine.cpus} CPUs ({machine.cpu_model}); {load}",
        f"- {machine.python}; {machine.database}; {machine.libraries}.",
    ]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class DrainRound:
    """One round: the raw loop, then the drain of an equal backlog, on a fresh database."""

    raw: RawResult
    drain: DrainResult
    receiver_cpu: tuple[float, float]  # receiver CPU seconds during the raw loop, the drain

    @property
    def ratio(self) -> float:
        return self.drain.per_second / self.raw.per_second if self.raw.per_second else 0.0

    @property
    def raw_busy(self) -> float:
        """The raw loop's share of one core (``_busy``)."""
        return _busy(self.raw.cpu_seconds, self.raw.seconds)

    @property
    def drain_busy(self) -> float:
        """The worker process's share of one core. A worker is one thread of Python, so the
        drain is as fast as its CPU allows only near 1.0; below that it waited for its
        receiver or its database, which share the machine's cores with it."""
        return _busy(self.drain.cpu_seconds, self.drain.seconds)

    def cpu_ratio(self) -> float | None:
        """On PostgreSQL, the ratio the CPU times give (see ``Report._server_rows``)."""
        server = self.drain.server_cpu_seconds
        if not server or not self.drain.deliveries or not self.raw.requests:
            return None
        raw = (self.raw.cpu_seconds + self.receiver_cpu[0]) / self.raw.requests
        drain = (self.drain.cpu_seconds + self.receiver_cpu[1] + server) / self.drain.deliveries
        return raw / drain


def median_ratio(rounds: list[DrainRound]) -> float:
    """The median round's drain / raw ratio: the verdict on the drain target."""
    return statistics.median(r.ratio for r in rounds)


@dataclass(frozen=True)
class Report:
    backend: str
    command: str
    machine: Machine
    settings: Settings
    rounds: list[DrainRound]
    channels: int  # webhook channels the backlog was spread over
    latency: LatencyResult
    rate: float
    # CPU seconds during the latency phase: ``serve`` (with its worker and any child), and
    # the database server's processes of the latency database (0 on SQLite); per PATCH.
    latency_cpu: tuple[float, float] = (0.0, 0.0)
    patches: int = 0
    history: int = 0  # deliveries already made in the latency database (stage_history)

    @property
    def ratio(self) -> float:
        return median_ratio(self.rounds)

    def durability(self) -> str:
        if self.backend == "sqlite":
            return f"SQLite WAL, `synchronous={self.settings.sqlite_synchronous}`"
        return "PostgreSQL, server defaults (`synchronous_commit=on` unless configured)"

    def rows(self) -> list[tuple[str, str, str]]:
        p99 = percentile([v * 1000 for v in self.latency.samples], 99)
        ratio_ok = "met" if self.ratio >= DRAIN_TARGET else "**not met**"
        p99_ok = "met" if p99 <= P99_TARGET_MS and not self.latency.missing else "**not met**"
        return [*self._drain_rows(ratio_ok), *self._latency_rows(p99, p99_ok)]

    def _drain_rows(self, ratio_ok: str) -> list[tuple[str, str, str]]:
        s = self.settings
        rounds = self.rounds
        n = rounds[0].raw.requests
        each = f"{len(rounds)} rounds, " if len(rounds) > 1 else ""
        timed_out = " (a drain TIMED OUT)" if any(r.drain.timed_out for r in rounds) else ""
        statuses: dict[str, int] = {}
        for r in rounds:
            for k, v in r.drain.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
        ratios = " / ".join(f"{r.ratio:.2f}" for r in rounds)
        return [
            (
                f"Raw aiohttp POST loop, {s.worker_concurrency} in flight",
                _each(rounds, lambda r: r.raw.per_second) + " req/s",
                f"{each}{n:,} requests each; {_each(rounds, lambda r: r.raw.seconds, '.2f')} s",
            ),
            (
                f"Worker drain of {rounds[0].drain.deliveries:,} queued deliveries, "
                f"{self.channels} channel{'s' if self.channels > 1 else ''}",
                _each(rounds, lambda r: r.drain.per_second) + f" deliveries/s{timed_out}",
                f"{_each(rounds, lambda r: r.drain.seconds, '.2f')} s; "
                f"final states {_states(statuses)}",
            ),
            (
                "CPU per request: raw loop / receiver",
                _pairs(rounds, lambda r: (r.raw.cpu_seconds, r.receiver_cpu[0]), "raw") + " µs",
                "CPU time, so less sensitive to a busy machine than the rates",
            ),
            (
                "CPU per delivery: worker / receiver",
                _pairs(rounds, lambda r: (r.drain.cpu_seconds, r.receiver_cpu[1]), "drain") + " µs",
                "worker includes claims, rendering and the attempt log",
            ),
            (
                "Share of one core busy: raw loop / worker",
                ", ".join(f"{r.raw_busy:.0%} / {r.drain_busy:.0%}" for r in rounds),
                "CPU time over wall time; below 100 % the process waited (for its receiver, "
                "or for the database)",
            ),
            *self._server_rows(),
            (
                "Drain / raw loop" + (", each round" if len(rounds) > 1 else ""),
                f"{ratios}×",
                (f"median {self.ratio:.2f}×; " if len(rounds) > 1 else "")
                + f"target ≥ {DRAIN_TARGET}×: {ratio_ok}",
            ),
        ]

    def _latency_rows(self, p99: float, p99_ok: str) -> list[tuple[str, str, str]]:
        lat_ms = [v * 1000 for v in self.latency.samples]
        api_ms = [v * 1000 for v in self.latency.api_seconds]
        return [
            (
                f"API → first attempt at {self.rate:g} events/s, p50",
                f"{percentile(lat_ms, 50):.1f} ms",
                f"{len(lat_ms):,} events measured; client kept {self.latency.offered_rate:.1f}/s; "
                f"{self.history:,} earlier deliveries in the database",
            ),
            ("same, p90", f"{percentile(lat_ms, 90):.1f} ms", ""),
            (
                "same, p99",
                f"{p99:.1f} ms",
                f"target ≤ {P99_TARGET_MS:g} ms: {p99_ok}",
            ),
            (
                "same, max",
                f"{max(lat_ms, default=math.nan):.1f} ms",
                f"{self.latency.missing} never arrived",
            ),
            (
                "PATCH /runs/{id} response time, p50 / p99",
                f"{percentile(api_ms, 50):.1f} / {percentile(api_ms, 99):.1f} ms",
                f"answered {self.latency.answered_rate:.1f}/s; {self.latency.api_errors} errors",
            ),
            *self._latency_cpu_rows(),
        ]

    def _latency_cpu_rows(self) -> list[tuple[str, str, str]]:
        if not self.patches:
            return []
        serve, server = self.latency_cpu
        value = f"{_us(serve, self.patches)} µs"
        if self.backend == "postgresql":
            value += f" / {_us(server, self.patches)} µs"
        return [
            (
                "CPU per PATCH: serve" + (" / database server" if server else ""),
                value,
                "the latency phase's, each PATCH with its delivery (serve's worker sends it)",
            )
        ]

    def _server_rows(self) -> list[tuple[str, str, str]]:
        """On PostgreSQL: the server's CPU per delivery, and the ratio the CPU times give.

        All processes share the machine's cores, so when they are the limit, a rate is
        about cores / (CPU per item of every process involved). The CPU-time ratio is that
        estimate for the drain against the raw loop; it moves much less with what else the
        machine does than the measured ratio, which a busy machine flatters (the raw loop,
        all system calls, slows down more)."""
        cpu_ratios = [r.cpu_ratio() for r in self.rounds]
        if self.backend != "postgresql" or None in cpu_ratios:
            return []
        rounds = self.rounds
        return [
            (
                "CPU per delivery: database server",
                _each(rounds, lambda r: _per(r.drain.server_cpu_seconds, r.drain.deliveries))
                + " µs",
                "the PostgreSQL processes of the drain's database",
            ),
            (
                "CPU-time ratio: raw (loop + receiver) / drain (worker + receiver + server)",
                " / ".join(f"{c:.2f}" for c in cpu_ratios if c is not None) + "×",
                "what the drain / raw ratio comes to when CPU is the limit",
            ),
        ]

    def table(self) -> str:
        rows = [("Measure", "Value", "Notes"), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def markdown(self) -> str:
        m = self.machine
        s = self.settings
        out = [
            f"### {m.database}: {self.durability()}",
            "",
            *measured_with(self.command, m),
            f"- Settings: {worker_settings(s)}, "
            f"lease_seconds={s.lease_seconds:g}; {self.durability()}.",
            "- Receiver, raw loop, worker, API server and database all on the same machine.",
            "",
            "| Measure | Value | Notes |",
            "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in self.rows()),
        ]
        return "\n".join(out)


def worker_settings(s: Settings) -> str:
    """The worker settings a drain's figures depend on, as the documents give them."""
    return (
        f"worker_concurrency={s.worker_concurrency}, "
        f"per_channel_concurrency={s.per_channel_concurrency} "
        f"(fast channels {s.fast_channel_cap}), "
        f"claim_batch={s.claim_batch}, poll_seconds={s.poll_seconds:g}"
    )


def _busy(cpu_seconds: float, seconds: float) -> float:
    """CPU time over wall time: 1.0 is one whole core."""
    return cpu_seconds / seconds if seconds else 0.0


def _per(seconds: float, count: int) -> float:
    return seconds / count * 1e6 if count else math.nan


def _each(rounds: list[DrainRound], value: Any, spec: str = ",.0f") -> str:
    """One figure per round, "a / b / c"."""
    return " / ".join(format(value(r), spec) for r in rounds)


def _pairs(rounds: list[DrainRound], seconds: Any, phase: str) -> str:
    """Two CPU figures per round, "a / b, c / d": per request of the raw loop or per
    delivery of the drain."""
    out = []
    for r in rounds:
        count = r.raw.requests if phase == "raw" else r.drain.deliveries
        first, second = seconds(r)
        out.append(f"{_per(first, count):,.0f} / {_per(second, count):,.0f}")
    return ", ".join(out)


def _us(seconds: float, count: int) -> str:
    return f"{_per(seconds, count):,.0f}" if count else "n/a"


def _states(statuses: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items())) or "none"


def write_docs(report: Report, path: Path = DOCS) -> None:
    write_block(report.backend, report.markdown(), path)


def write_block(name: str, markdown: str, path: Path = DOCS) -> None:
    """Replace the text between ``<!-- bench:<name>:begin -->`` and its end marker (or add
    the block at the end of the document)."""
    begin = f"<!-- bench:{name}:begin -->"
    end = f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{markdown}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def docs_options(command: Any) -> Any:
    """``--write-docs`` and ``--docs PATH``: the options of every bench that records its
    figures in docs/benchmarks.md."""
    command = click.option(
        "--docs",
        "docs_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DOCS,
        show_default=True,
        help="The document --write-docs updates.",
    )(command)
    return click.option(
        "--write-docs", is_flag=True, help="Write the figures into docs/benchmarks.md as well."
    )(command)
