"""The delivery benchmark (bench/deliveries.py) runs end to end and rewrites only its block."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest
import sqlalchemy as sa
from bench.attempt_costs import frozen_twin
from bench.backlog import create_webhook_channel, stage_history
from bench.drain import DrainResult
from bench.raw import RawResult
from bench.report import DrainRound, median_ratio
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.tables import channels, deliveries
from loadbell.values import Outcome, Verdict

ROOT = Path(__file__).resolve().parents[1]


def run_bench(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m bench.<module> args`` from the repository; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_benchmark_runs_all_phases_and_writes_its_docs_block(tmp_path: Path) -> None:
    """A tiny run drains its backlog, measures latency through `loadbell serve`, and replaces
    the SQLite block of the document it is given, leaving the rest alone."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\nhand-written\n\n<!-- bench:sqlite:begin -->\nstale\n"
        "<!-- bench:sqlite:end -->\n\n<!-- bench:postgresql:begin -->\nkept\n"
        "<!-- bench:postgresql:end -->\n"
    )
    args = ["--n", "300", "--drain-rounds", "2", "--rate", "20", "--seconds", "1"]
    args += ["--history", "150"]
    done = run_bench("deliveries", *args, "--warmup", "0.5", "--write-docs", "--docs", str(docs))
    # Each round pairs its raw loop and its drain; the verdict is the median round's.
    ratios = re.search(
        r"Drain / raw loop, each round +([\d.]+) / ([\d.]+)× +median ([\d.]+)×", done.stdout
    )
    assert ratios, done.stdout
    first, second, median = (float(ratios[i]) for i in (1, 2, 3))
    assert abs(median - (first + second) / 2) <= 0.01  # as printed, to two decimals
    assert re.search(r"[\d,]+ / [\d,]+ req/s +2 rounds, 300 requests each", done.stdout)
    text = docs.read_text()
    assert "hand-written" in text and "kept" in text and "stale" not in text
    assert "Worker drain of 300 queued deliveries" in text
    assert "final states succeeded 600" in text  # both rounds' backlogs
    assert re.search(r"CPU per PATCH: serve +\| [\d,]+ µs", text)
    assert "150 earlier deliveries in the database" in text  # --history
    assert re.search(
        r"Share of one core busy: raw loop / worker \| \d+% / \d+%, \d+% / \d+% \|", text
    )


async def test_a_history_is_deliveries_made_for_a_deleted_channel_then_analyzed(
    settings: Settings, engine: AsyncEngine
) -> None:
    """The latency phase's database in service (bench/backlog.py: stage_history): every
    delivery made, its channel deleted (so the phase's events do not fan out to it), other
    channels untouched, and the planner's statistics taken."""
    box = SecretBox(settings.secret_key)
    async with engine.begin() as conn:
        kept = await create_webhook_channel(conn, box, "http://127.0.0.1:9/kept", ["test.started"])
    await stage_history(engine, box, 120)
    async with engine.connect() as conn:
        statuses = (
            await conn.execute(
                sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
            )
        ).all()
        assert statuses == [("succeeded", 120)]
        live = await conn.execute(sa.select(channels.c.id).where(channels.c.deleted_at.is_(None)))
        assert live.scalars().all() == [kept]
        if settings.is_sqlite:
            stats = "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'deliveries'"
        else:
            stats = "SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"
        assert (await conn.execute(sa.text(stats))).scalar_one() > 0


def test_the_drain_verdict_is_the_median_round() -> None:
    """Three rounds: the verdict is the middle ratio, not the first round's or the best."""

    def round_at(raw_per_s: float, drain_per_s: float) -> DrainRound:
        raw = RawResult(requests=1000, seconds=1000 / raw_per_s, failures=0, cpu_seconds=0.1)
        drained = DrainResult(
            deliveries=1000,
            seconds=1000 / drain_per_s,
            statuses={"succeeded": 1000},
            timed_out=False,
            cpu_seconds=0.2,
        )
        return DrainRound(raw, drained, (0.05, 0.05))

    rounds = [round_at(10_000, 7_000), round_at(10_000, 4_000), round_at(10_000, 5_500)]
    assert [round(r.ratio, 2) for r in rounds] == [0.7, 0.4, 0.55]
    assert median_ratio(rounds) == pytest.approx(0.55)


def test_a_round_says_how_much_of_a_core_each_process_kept_busy() -> None:
    """CPU time over wall time: the raw loop's and the worker's share of one core."""
    raw = RawResult(requests=1000, seconds=0.5, failures=0, cpu_seconds=0.45)
    drained = DrainResult(
        deliveries=1000,
        seconds=2.0,
        statuses={"succeeded": 1000},
        timed_out=False,
        cpu_seconds=1.5,
    )
    measured = DrainRound(raw, drained, (0.05, 0.05))
    assert measured.raw_busy == pytest.approx(0.9)
    assert measured.drain_busy == pytest.approx(0.75)
    idle = DrainRound(RawResult(0, 0.0, 0, 0.0), drained, (0.0, 0.0))
    assert idle.raw_busy == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_run_update_benchmark_reports_cpu_per_update(db: str) -> None:
    """A tiny run of bench/run_update.py makes its run updates and prints the CPU per update
    of this process and (on PostgreSQL) of the server."""
    done = run_bench("run_update", "--n", "20", "--rounds", "2", "--db", db)
    found = re.findall(r"client ([\d,]+) µs, server ([\d,]+) µs per run update", done.stdout)
    assert len(found) == 2
    assert all(int(client.replace(",", "")) > 0 for client, _ in found)
    assert all((int(server.replace(",", "")) > 0) == (db == "postgresql") for _, server in found)


@pytest.mark.slow
def test_wal_benchmark_samples_the_log_through_a_short_run() -> None:
    """A tiny run of bench/wal.py drives `loadbell serve` with events and a reader, and prints
    the -wal file's sizes, the largest one and the figures for the events and the reads."""
    args = ["--rate", "20", "--seconds", "3", "--idle", "1", "--readers", "1", "--every", "1"]
    done = run_bench("wal", *args)
    assert "-wal file, max during the load:" in done.stdout
    assert "(idle from here)" in done.stdout
    assert "events: 80 PATCHes" in done.stdout
    assert "0 never arrived" in done.stdout
    assert "GET /runs?limit=50:" in done.stdout


@pytest.mark.slow
def test_overload_benchmark_reports_timeouts_and_orphans(tmp_path: Path) -> None:
    """A tiny run of bench/overload.py at a given rate sends twice it to `loadbell serve`,
    prints successes, 503s, timeouts and orphans, and writes only its own docs block."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n<!-- bench:overload:begin -->\nstale\n<!-- bench:overload:end -->\n"
        "\nkept\n"
    )
    args = ["--rate", "10", "--seconds", "2", "--write-docs", "--docs", str(docs)]
    done = run_bench("overload", *args)
    assert "twice that: 20/s for 2 s" in done.stdout
    assert "client timeouts (30 s): 0 (must be 0)" in done.stdout
    assert "orphan runs: 0 (must be 0)" in done.stdout
    text = docs.read_text()
    assert "kept" in text and "stale" not in text
    assert "| Orphan runs (Created, no client got a 2xx) | 0 | target 0 |" in text


@pytest.mark.slow
def test_retention_benchmark_shows_the_pruned_size_staying_below_the_grown_one() -> None:
    """A few simulated days of bench/retention.py print the size per day, and once the
    retention has passed, the pruned database uses less than the unpruned one."""
    args = ["--days", "4", "--runs-per-day", "10", "--reports-per-run", "3", "--keep-days", "2"]
    done = run_bench("retention", *args)
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 4 |")]
    assert len(rows) == 1, done.stdout
    grown, pruned = (float(cell.split()[0]) for cell in rows[0].split("|")[2:4])
    assert pruned < grown, rows[0]
    assert "rows: runs 40, events 100," in done.stderr  # two days of events left of four


@pytest.mark.slow
def test_hog_benchmark_samples_the_backlog_through_a_short_run(tmp_path: Path) -> None:
    """A tiny run of bench/hog.py (one hog for 2 s) prints each phase with its PATCH
    answers and due backlog, a line for every 5 s, and writes only its own docs block."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n<!-- bench:hog:process:begin -->\nstale\n<!-- bench:hog:process:end -->\n"
        "\nkept\n"
    )
    args = ["--rate", "20", "--before", "1", "--hog-seconds", "2", "--after", "1", "--hogs", "1"]
    done = run_bench("hog", *args, "--write-docs", "--docs", str(docs))
    assert "80 PATCHes at 20/s" in done.stderr
    for phase in ("before (1 s)", "hog (2 s)", "after (2 s)"):
        assert phase in done.stdout, done.stdout
    assert "due backlog: " in done.stdout
    text = docs.read_text()
    assert "kept" in text and "stale" not in text
    assert "| hog (2 s) |" in text


@pytest.mark.slow
def test_api_path_benchmark_measures_every_arm_or_says_why_not(tmp_path: Path) -> None:
    """A tiny run of bench/api_path.py PATCHes runs through `loadbell serve` until every
    notification reached the receiver, runs each peer arm or names why it was skipped, and
    writes its block into the document it is given."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nhand-written\n")
    args = ["--count", "40", "--warm", "5", "--rounds", "1", "--in-flight", "4"]
    run_bench("api_path", *args, "--write-docs", "--docs", str(docs))
    text = docs.read_text()
    assert "hand-written" in text and "<!-- bench:api-path:begin -->" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    loadbell = rows["| loadbell serve (SQLite)"]
    assert "0 errors or missing" in loadbell and "ms |" in loadbell
    assert "| Apprise notify() loop" in rows  # apprise is a dependency of loadbell
    celery = next(line for key, line in rows.items() if "elery" in key)
    assert "0 errors or missing" in celery or "skipped" in celery


@pytest.mark.slow
def test_api_path_benchmark_runs_an_external_worker_and_splits_its_cpu(tmp_path: Path) -> None:
    """With --external-worker, serve runs without its worker, a `loadbell worker` process
    delivers every notification, and the row gives each process's CPU share."""
    args = ["--count", "30", "--warm", "5", "--rounds", "1", "--in-flight", "4"]
    done = run_bench("api_path", *args, "--arms", "loadbell", "--external-worker")
    row = next(line for line in done.stdout.splitlines() if line.startswith("| loadbell serve"))
    assert "0 errors or missing" in row, row
    assert "serve CPU ms" in row and "worker CPU ms" in row, row
    assert "--external-worker" in done.stdout


@pytest.mark.slow
def test_api_inprocess_benchmark_patches_every_run_through_the_app() -> None:
    """A tiny run of bench/api_inprocess.py answers every PATCH 200 (it fails otherwise)
    and gives the CPU per PATCH of each round."""
    done = run_bench("api_inprocess", "--count", "20", "--rounds", "2")
    assert re.search(r"20 PATCHes × 2: [\d.]+-[\d.]+ µs of CPU per PATCH", done.stdout)
    assert done.stderr.count("µs of CPU per PATCH") == 2


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_worker_cpu_benchmark_drains_every_round(db: str) -> None:
    """A tiny run of bench/worker_cpu.py: each round's backlog ends all succeeded (the
    bench fails otherwise), and it prints each round's figure and their median."""
    done = run_bench("worker_cpu", "--db", db, "--n", "300", "--rounds", "2")
    assert re.search(
        rf"worker CPU per delivery, HTTP answered in-process \({db}, 300 per round\): "
        r"median [\d.]+ µs; rounds [\d.]+, [\d.]+$",
        done.stdout.strip(),
    ), done.stdout
    assert done.stderr.count("µs") == 2


@pytest.mark.slow
def test_worker_instructions_benchmark_counts_drains_and_raw_loops_under_valgrind() -> None:
    """A tiny run of bench/worker_instructions.py --http: both drains and both raw loops run
    under callgrind (each drain must end all succeeded and each raw loop without a failed
    request, or its child fails and so does the bench), and each figure is the difference
    of its counts over the difference of the sizes."""
    done = run_bench("worker_instructions", "--http", "--small", "5", "--large", "15")
    drain_line, raw_line = done.stdout.strip().splitlines()[-2:]
    found = re.search(
        r"worker instructions per delivery, sent to bench/receiver.py \(sqlite\): ([\d,]+) "
        r"\(drains of 5 and 15: ([\d,]+) and ([\d,]+)\)$",
        drain_line,
    )
    assert found, done.stdout
    per, small, large = (int(g.replace(",", "")) for g in found.groups())
    # The event loop only: the engine's start and its first claim, at least.
    assert small > 10_000_000
    assert large > small
    assert per == round((large - small) / 10)
    found = re.search(
        r"raw loop instructions per request: ([\d,]+) \(loops of 5 and 15: ([\d,]+) and "
        r"([\d,]+)\); raw / drain: ([\d.]+)x$",
        raw_line,
    )
    assert found, done.stdout
    raw_per, raw_small, raw_large = (int(g.replace(",", "")) for g in found.groups()[:3])
    assert raw_large > raw_small
    assert raw_per == round((raw_large - raw_small) / 10)
    assert float(found.group(4)) == round(raw_per / per, 2)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_worker_instructions_drain_answers_every_delivery_outside_valgrind(
    db: str, tmp_path: Path
) -> None:
    """The child that valgrind runs, run directly: with its clock-paced batching stretched
    and its answers delayed, the worker still drains a staged backlog all succeeded."""
    from bench import databases, loop
    from bench.worker_instructions import _stage

    url, _ = loop.run(_stage(db, tmp_path, "child", 40, "http://127.0.0.1:9/drain"))
    try:
        run_bench("worker_instructions", "--child-url", url, "--n", "40")
    finally:
        if db == "postgresql":
            loop.run(databases.drop_database(url))


@pytest.mark.parametrize("bench", ["worker_instructions", "api_instructions"])
def test_instruction_benchmarks_say_what_to_install_without_valgrind(
    bench: str, tmp_path: Path
) -> None:
    """Without valgrind on PATH the bench stops at once and names the package."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": str(tmp_path)},
    )
    assert done.returncode == 1
    assert "valgrind is not installed" in done.stderr, done.stderr


@pytest.mark.slow
def test_api_instructions_benchmark_counts_run_updates_under_valgrind() -> None:
    """A tiny run of bench/api_instructions.py: both counts run under callgrind (each update
    must be answered 200, or its child fails and so does the bench), and the figure is the
    difference of the counts over the difference of the sizes."""
    done = run_bench("api_instructions", "--small", "2", "--large", "6", "--warm", "5")
    found = re.search(
        r"API instructions per PATCH /runs/\{id\} \(sqlite, in process\): ([\d,]+) "
        r"\(counts of 2 and 6: ([\d,]+) and ([\d,]+)\)$",
        done.stdout.strip(),
    )
    assert found, done.stdout
    per, small, large = (int(g.replace(",", "")) for g in found.groups())
    # The event loop only: migrations, the seed and the app's start, at least.
    assert small > 10_000_000
    assert large > small
    assert per == round((large - small) / 4)
    # A run update is its transaction and the framework around it: some 1.5 million here.
    assert 100_000 < per < 20_000_000


def test_api_instructions_child_updates_every_run_outside_valgrind() -> None:
    """The child that valgrind runs, run directly: every update it sends is answered 200
    (it exits with the status otherwise)."""
    run_bench("api_instructions", "--child", "3", "--warm", "2", "--prepared", "5")


def test_attempt_costs_benchmark_times_each_piece_now_and_before() -> None:
    """A tiny run of bench/attempt_costs.py: a line per piece, each side's µs and their
    ratio."""
    done = run_bench("attempt_costs", "--rounds", "1", "--number", "200")
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["per", "attempt", "now", "before", "ratio"]
    pieces = [
        "Outcome, Message, OutboundRequest",
        "the attempt's three metrics",
        "masking",
        "the attempt's deadline",
    ]
    assert len(lines) == 1 + len(pieces), done.stdout
    for line, piece in zip(lines[1:], pieces, strict=True):
        assert line.startswith(piece) and re.search(r"[\d.]+ µs +[\d.]+ µs +[\d.]+×$", line)


def test_the_frozen_twin_has_the_fields_and_defaults_and_is_frozen() -> None:
    """What the bench compares with: the value type's fields and defaults, frozen."""
    twin = frozen_twin(Outcome)
    assert [(f.name, f.default) for f in fields(twin)] == [
        (f.name, f.default) for f in fields(Outcome)
    ]
    made = twin(Verdict.DELIVERED)
    assert (
        made.request_headers == {}
        and made.request_headers is not twin(Verdict.RETRY).request_headers
    )
    with pytest.raises(FrozenInstanceError):
        made.status_code = 200


@pytest.mark.slow
def test_delivery_log_benchmark_times_every_query_and_writes_its_block(tmp_path: Path) -> None:
    """A small seeded log: every query shape answers 200 through `loadbell serve`, /healthz
    is probed meanwhile, and the SQLite block of the document is written."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nhand-written\n")
    args = ["--n", "3000", "--rounds", "1", "--write-docs", "--docs", str(docs)]
    done = run_bench("delivery_log", *args)
    text = docs.read_text()
    assert "hand-written" in text and "<!-- bench:delivery-log:sqlite:begin -->" in text
    assert "| API no filter |" in text and "| web log, no filter |" in text
    assert "`/healthz` during the queries" in text
    assert "HTTP [200]" in done.stdout and "HTTP [4" not in done.stdout
    assert "HTTP [5" not in done.stdout


@pytest.mark.slow
def test_delivery_log_benchmark_keeps_its_seed_for_another_run(tmp_path: Path) -> None:
    """``--keep`` leaves the seeded database and its ids in a file; ``--reuse`` times that
    database again without seeding it."""
    kept = tmp_path / "seed.json"
    first = run_bench("delivery_log", "--n", "2000", "--rounds", "1", "--keep", str(kept))
    assert "seeding" in first.stdout and kept.exists()
    assert (tmp_path / "log.db").exists()  # SQLite: the file beside the ids
    again = run_bench("delivery_log", "--rounds", "1", "--reuse", str(kept))
    assert "seeding" not in again.stdout
    assert "| web log, no filter |" in again.stdout
    assert "HTTP [200]" in again.stdout and "HTTP [4" not in again.stdout


@pytest.mark.slow
def test_workers_benchmark_counts_each_workers_attempts(tmp_path: Path) -> None:
    """A tiny run of bench/workers.py has two `loadbell worker` processes drain one
    PostgreSQL backlog, prints each one's attempts (together all of them) and the ratio to
    the raw loop, and writes only its own docs block."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n<!-- bench:workers:postgresql:begin -->\nstale\n"
        "<!-- bench:workers:postgresql:end -->\n\nkept\n"
    )
    args = ["--n", "400", "--workers", "2", "--db", "postgresql"]
    done = run_bench("workers", *args, "--write-docs", "--docs", str(docs))
    assert "Drain / raw loop" in done.stdout
    shares = re.search(r"Attempts per worker\s+([\d,]+) \(\d+%\) / ([\d,]+) \(\d+%\)", done.stdout)
    assert shares, done.stdout
    assert sum(int(s.replace(",", "")) for s in shares.groups()) == 400
    text = docs.read_text()
    assert "kept" in text and "stale" not in text
    assert "2 `loadbell worker` processes drain 400 deliveries" in text


@pytest.mark.slow
def test_soak_benchmark_samples_rss_and_answers_every_request(tmp_path: Path) -> None:
    """A short run of bench/soak.py drives the mixed load through `loadbell serve`, samples
    its RSS, answers every request, and writes only its own docs block."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nkept\n")
    args = ["--minutes", "0.4", "--settle-minutes", "0.2", "--rate", "20"]
    done = run_bench("soak", *args, "--write-docs", "--docs", str(docs))
    answered = re.search(r"Requests answered: (\d+) of (\d+)", done.stdout)
    assert answered and answered.group(1) == answered.group(2), done.stdout
    assert "errors 0" in done.stdout
    assert "Difference (end − settled)" in done.stdout
    text = docs.read_text()
    assert "kept" in text and "<!-- bench:soak:sqlite:begin -->" in text


@pytest.mark.slow
def test_k6_overhead_benchmark_pairs_every_arm_with_k6_alone() -> None:
    """A tiny run times k6 alone, the wrapper with and without Apdex and the encodings, and
    prints each arm's fixed cost and its figure paired with k6 alone."""
    done = run_bench("k6_overhead", "--rounds", "1", "--duration", "1", "--vus", "2", "--encodings")
    out = done.stdout
    assert "fixed cost of a run" in out
    arms = (
        "k6 alone --out json ",
        "k6 in loadbell ",
        "k6 in loadbell --no-apdex",
        "k6 alone --out csv",
        "k6 alone --out json, 2 tags",
    )
    paired = out.split("paired (median over rounds")[1]
    for arm in arms:
        assert f"round 1: {arm}" in out, arm
        assert f"  {arm}" in paired, arm
    assert "us CPU/iteration" in out


def test_sqlite_transaction_benchmark_times_both_ways() -> None:
    """A tiny run of bench/sqlite_transaction.py prints the CPU per transaction of
    ``transaction()`` and of SQLAlchemy's ``begin()``."""
    done = run_bench("sqlite_transaction", "--count", "20", "--rounds", "2")
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["transaction()", "conn.begin()"]
    assert all("µs per transaction (2 rounds of 20)" in line for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_redelivery_benchmark_restarts_its_failures(db: str) -> None:
    """A tiny run of bench/redelivery.py restarts every failure it staged, in chunks."""
    done = run_bench("redelivery", "--n", "250", "--chunk", "100", "--db", db)
    assert re.search(
        rf"{db}: 250 restarted, 100 per statement, in \d+ ms; longest wait", done.stdout
    )
