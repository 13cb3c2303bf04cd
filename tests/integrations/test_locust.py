"""The Locust plugin (``import loadbell.locust``) with the real Locust against a local target."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from loadbell.testing import RecordingReceiver

from .conftest import (
    LOCUST_BIN,
    apdex_of,
    assert_apdex,
    events_of,
    loadbell_env,
    wait_for_event,
)

pytestmark = pytest.mark.slow

# About one failure in four requests (task weights 3:1): above 10 %, within 50 %.
MIXED = """
import loadbell.locust  # noqa: F401
from locust import HttpUser, constant, task

class Shopper(HttpUser):
    wait_time = constant(0.02)

    @task(3)
    def ok(self):
        self.client.get("/")

    @task(1)
    def fail(self):
        self.client.get("/fail")
"""

HEALTHY = """
import loadbell.locust  # noqa: F401
from locust import HttpUser, constant, task

class Shopper(HttpUser):
    wait_time = constant(0.02)

    @task
    def ok(self):
        self.client.get("/")
"""

# The shape is test code; its exception kills the shape greenlet, which ends the run.
BROKEN_SHAPE = (
    HEALTHY
    + """
from locust import LoadTestShape

class Broken(LoadTestShape):
    def tick(self):
        if self.get_run_time() > 1.5:
            raise RuntimeError("broken shape")
        return (2, 2)
"""
)


SLOW = "/slow?ms=300"

# Two fast successes, one slow success and one failure per round of tasks.
DISTRIBUTED = f"""
import loadbell.locust  # noqa: F401
from locust import HttpUser, constant, task

class Shopper(HttpUser):
    wait_time = constant(0.02)

    @task(2)
    def ok(self):
        self.client.get("/")

    @task(1)
    def slow(self):
        self.client.get("{SLOW}")

    @task(1)
    def fail(self):
        self.client.get("/fail")
"""

# An event listener that fails on the first test start only.
BROKEN_FIRST_RUN = (
    HEALTHY
    + """
from locust import events

starts = []

@events.test_start.add_listener
def break_the_first_run(**_):
    starts.append(1)
    if len(starts) == 1:
        raise RuntimeError("broken first run")
"""
)


# Added to a locustfile: each Locust process writes every request it reports (name, response
# time in ms, success) to its own file in $REQUEST_LOG_DIR, so that a test can work out the
# exact Apdex from what Locust measured instead of assuming how fast the machine is.
# Distributed, each report to the master says how many requests its worker had written by
# then, and the master notes the reports it got: it waits only 0.5 s for the workers' last
# ones, and its totals (so loadbell's) go without a report that comes later.
RECORD_REQUESTS = """
import json
import os
from locust import events

_folder = os.environ["REQUEST_LOG_DIR"]
_requests = open(os.path.join(_folder, f"requests-{os.getpid()}.jsonl"), "a", buffering=1)
_written = 0

@events.request.add_listener
def record_request(name, response_time, exception, **_):
    global _written
    _requests.write(json.dumps([name, response_time, exception is None]) + "\\n")
    _written += 1

@events.report_to_master.add_listener
def count_in_report(client_id, data, **_):
    data["requests_written"] = [os.getpid(), _written]

@events.worker_report.add_listener
def note_report(client_id, data, **_):
    with open(os.path.join(_folder, "reports.jsonl"), "a") as reports:
        reports.write(json.dumps(data["requests_written"]) + "\\n")
"""


def recorded_requests(folder: Path) -> list[tuple[str, float, bool]]:
    """``(name, response time ms, failed)`` of every request the RECORD_REQUESTS listener
    saw; distributed, of those whose worker's report reached the master."""
    reports = folder / "reports.jsonl"
    reported: dict[str, int] | None = None  # process id: requests the master heard of
    if reports.exists():
        reported = {}
        for line in reports.read_text().splitlines():
            pid, written = json.loads(line)
            reported[str(pid)] = max(reported.get(str(pid), 0), written)
    found = []
    for path in sorted(folder.glob("requests-*.jsonl")):
        lines = path.read_text().splitlines()
        if reported is not None:
            lines = lines[: reported.get(path.stem.removeprefix("requests-"), 0)]
        for line in lines:
            name, response_time, ok = json.loads(line)
            # None counts as 0 ms, as loadbell.locust's counter takes it
            found.append((name, float(response_time or 0.0), not ok))
    return found


def locustfile(tmp_path: Path, source: str, name: str = "locustfile.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


async def locust(
    spawn: Callable[..., Any], env: dict[str, str], path: str, target: str, *options: str
) -> Any:
    return await spawn(
        LOCUST_BIN, "-f", path, "--host", target, "--loglevel", "WARNING", *options, env=env
    )


def headless(seconds: str, users: str = "2") -> tuple[str, ...]:
    return ("--headless", "-u", users, "-r", users, "-t", seconds)


async def test_headless_passing_run(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """A clean headless run: Initializing → Running → intermediate reports → Finished/passed
    with exact Apdex, then report_available; exit code 0. Options come from the environment
    (LOADBELL_*) and from the command line (--loadbell-test)."""
    path = locustfile(tmp_path, HEALTHY + RECORD_REQUESTS)
    log_dir = tmp_path / "requests"
    log_dir.mkdir()
    proc = await locust(
        spawn,
        {**loadbell_env(app_server), "REQUEST_LOG_DIR": str(log_dir)},
        path,
        target,
        *headless("6s"),
        "--loadbell-report-interval",
        "1",
        "--loadbell-test",
        "shop",
    )
    assert await proc.finish() == 0, proc.stderr
    await wait_for_event(hook, "test.report_available")
    order = [p["event"] for p in [r.json() for r in hook.requests]]
    assert order[:2] == ["test.starting", "test.started"]
    assert "test.report_intermediate" in order
    assert order.index("test.finished") < order.index("test.report_available")
    run = events_of(hook, "test.finished")[0]["run"]
    assert (run["status"], run["result"]) == (3, "passed")
    m = run["metrics"]
    assert m["requests"] > 10 and m["error_rate"] == 0
    # Exact, from every request Locust timed (default T = 500 ms)
    requests = recorded_requests(log_dir)
    assert len(requests) == m["requests"]
    assert m["apdex_t_ms"] == 500
    assert_apdex(m["apdex"], apdex_of([(ms, failed) for _, ms, failed in requests], 500))
    assert m["vus_max"] == 2 and m["avg_ms"] > 0 and m["rps"] > 0
    live = events_of(hook, "test.report_intermediate")[0]["extra"]["report"]["metrics"]
    assert live["vus"] == 2 and live["requests"] > 0
    assert f"loadbell: run {run['id']}:" in proc.stderr


@pytest.mark.parametrize(
    ("max_ratio", "code", "result"),
    [
        ("0.1", 3, "failed"),  # 25 % failures > 10 %: failed, and Locust exits 3
        ("0.5", 0, "passed"),  # within the ratio: passed, and the failures no longer exit 1
    ],
)
async def test_max_fail_ratio(
    app_server: Any,
    hook: RecordingReceiver,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
    max_ratio: str,
    code: int,
    result: str,
) -> None:
    """--loadbell-max-fail-ratio decides the result, the threshold line and the exit code."""
    path = locustfile(tmp_path, MIXED)
    env = {**loadbell_env(app_server), "LOADBELL_MAX_FAIL_RATIO": max_ratio}
    proc = await locust(spawn, env, path, target, *headless("5s"))
    assert await proc.finish() == code, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["result"]) == (3, result)
    [threshold] = run["metrics"]["thresholds"]
    assert threshold == {
        "metric": "fail_ratio",
        "expression": f"fail_ratio<={max_ratio}",
        "ok": result == "passed",
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_interrupted_run_is_aborted_by_user(
    app_server: Any,
    hook: RecordingReceiver,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
    signum: int,
) -> None:
    """Ctrl-C or SIGTERM during a run: Aborted by user, with the figures so far."""
    path = locustfile(tmp_path, HEALTHY)
    proc = await locust(spawn, loadbell_env(app_server), path, target, *headless("60s"))
    await wait_for_event(hook, "test.started")
    await asyncio.sleep(1)
    proc.signal(signum)
    await proc.finish(timeout=30)
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["status_text"]) == (5, "Aborted by user")
    assert run["metrics"]["requests"] > 0
    await wait_for_event(hook, "test.report_available")


async def test_exception_in_test_code_is_a_script_error(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """An exception in the test code that stops the run: Aborted by script error (Locust
    itself exits 2 for the unhandled exception)."""
    path = locustfile(tmp_path, BROKEN_SHAPE)
    proc = await locust(spawn, loadbell_env(app_server), path, target, "--headless")
    assert await proc.finish() == 2, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["status_text"]) == (7, "Aborted by script error")


async def test_distributed_master_reports_and_workers_stay_silent(
    app_server: Any,
    hook: RecordingReceiver,
    api: httpx.AsyncClient,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
) -> None:
    """A master and two worker processes make one run, reported by the master alone (the
    workers have LOADBELL_* too): intermediate reports, then final figures that are the
    master's totals once the workers' last stats are in. The master's --loadbell-url,
    --loadbell-token and --loadbell-apdex-t flags apply; the workers count Apdex with the
    master's T and the master sums their counts exactly."""
    path = locustfile(tmp_path, DISTRIBUTED + RECORD_REQUESTS)
    log_dir = tmp_path / "requests"
    log_dir.mkdir()
    record = {"REQUEST_LOG_DIR": str(log_dir)}
    port = str(free_port())
    master = await locust(
        spawn,
        record,  # no LOADBELL_* here: the flags below must be enough
        path,
        target,
        *headless("6s", users="4"),
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        port,
        "--expect-workers",
        "2",
        "--loadbell-url",
        app_server.url,
        "--loadbell-token",
        app_server.token,
        "--loadbell-apdex-t",
        "150",
        "--loadbell-report-interval",
        "1",
        "--json",
    )
    workers = [
        await locust(
            spawn,
            {**loadbell_env(app_server), **record},
            path,
            target,
            "--worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            port,
        )
        for _ in range(2)
    ]
    assert await master.finish(timeout=60) == 1, master.stderr  # failures: Locust's own 1
    assert [await w.finish(timeout=30) for w in workers] == [0, 0]
    run = (await wait_for_event(hook, "test.finished"))["run"]
    await wait_for_event(hook, "test.report_available")
    assert len((await api.get("/runs")).json()["items"]) == 1
    assert len(events_of(hook, "test.starting")) == 1
    assert len(events_of(hook, "test.started")) == 1
    live = events_of(hook, "test.report_intermediate")
    assert len(live) >= 2 and all(p["run"]["id"] == run["id"] for p in live)
    assert live[-1]["extra"]["report"]["metrics"]["vus"] == 4
    # Locust's own final numbers, printed by --json after quitting.
    stats = {s["name"]: s for s in max(_json_lists(master.stdout), key=len)}
    count = {name: s["num_requests"] for name, s in stats.items()}
    total = sum(count.values())
    failures = sum(s["num_failures"] for s in stats.values())
    m = run["metrics"]
    assert (run["status"], run["result"]) == (3, "failed")
    assert m["requests"] == total > 0
    assert failures == count["/fail"]
    assert m["error_rate"] == pytest.approx(failures / total, abs=1e-6)
    # Exact, from every request the workers timed and reported, whatever the machine's speed
    # made of it
    requests = recorded_requests(log_dir)
    assert Counter(name for name, _, _ in requests) == count
    assert Counter(name for name, _, failed in requests if failed) == Counter(
        {name: s["num_failures"] for name, s in stats.items()}
    )
    timed = [(ms, failed) for _, ms, failed in requests]
    assert m["apdex_t_ms"] == 150
    assert_apdex(m["apdex"], apdex_of(timed, 150))
    # /slow takes 300 ms at least: never satisfied at T = 150, but better than frustrated at
    # the workers' default 500 unless it took over 2 s, so the figure shows which T counted.
    assert all(ms >= 300 for name, ms, _ in requests if name == SLOW)
    assert apdex_of(timed, 150) < apdex_of(timed, 500)
    assert m["vus_max"] == 4


async def test_a_script_error_marks_only_its_own_run(
    app_server: Any,
    hook: RecordingReceiver,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
) -> None:
    """In the web UI, an unhandled exception during the first run makes that run Aborted by
    script error; the next run in the same process is judged on its own. Locust's exit code
    still counts the error."""
    path = locustfile(tmp_path, BROKEN_FIRST_RUN)
    port = free_port()
    proc = await locust(
        spawn,
        loadbell_env(app_server),
        path,
        target,
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(port),
    )
    await _two_web_ui_runs(hook, f"http://127.0.0.1:{port}", target)
    proc.signal(signal.SIGTERM)
    assert await proc.finish(timeout=30) == 2, proc.stderr
    finished = events_of(hook, "test.finished")
    assert [(f["run"]["status"], f["run"]["result"]) for f in finished] == [
        (7, "failed"),
        (3, "passed"),
    ]


async def _two_web_ui_runs(hook: RecordingReceiver, ui: str, target: str) -> None:
    """Start and stop two runs from the web UI, each one closed before the next."""
    async with httpx.AsyncClient(base_url=ui, timeout=10) as web:
        for _ in range(100):
            try:
                await web.get("/")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        for n in (1, 2):
            r = await web.post("/swarm", data={"user_count": 2, "spawn_rate": 2, "host": target})
            assert r.status_code == 200, r.text
            await asyncio.sleep(1.5)
            assert (await web.post("/stop")).status_code == 200
            deadline = asyncio.get_running_loop().time() + 15
            while len(events_of(hook, "test.finished")) < n:
                assert asyncio.get_running_loop().time() < deadline, "run not closed"
                await asyncio.sleep(0.1)


async def test_web_ui_runs_are_runs(
    app_server: Any,
    hook: RecordingReceiver,
    api: httpx.AsyncClient,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
) -> None:
    """In web-UI mode every start/stop is its own run, closed after the stop; quitting
    between runs sends nothing more."""
    path = locustfile(tmp_path, HEALTHY)
    port = free_port()
    proc = await locust(
        spawn,
        loadbell_env(app_server),
        path,
        target,
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(port),
    )
    await _two_web_ui_runs(hook, f"http://127.0.0.1:{port}", target)
    proc.signal(signal.SIGTERM)
    await proc.finish(timeout=30)
    finished = events_of(hook, "test.finished")
    assert [(f["run"]["status"], f["run"]["result"]) for f in finished] == [
        (3, "passed"),
        (3, "passed"),
    ]
    assert len({f["run"]["id"] for f in finished}) == 2
    assert all(f["run"]["metrics"]["requests"] > 0 for f in finished)


def _json_lists(text: str) -> list[list[dict[str, Any]]]:
    decoder = json.JSONDecoder()
    found = []
    for i, char in enumerate(text):
        if char == "[" and (i == 0 or text[i - 1] == "\n"):
            value, _ = decoder.raw_decode(text, i)
            found.append(value)
    return found


async def test_plugin_listed_with_f(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """`-f locustfile.py,<plugin file>` turns the plugin on without touching the locustfile."""
    # find_spec, not import: importing Locust here would monkey-patch this test process.
    spec = importlib.util.find_spec("loadbell.locust")
    assert spec is not None and spec.origin is not None
    path = locustfile(tmp_path, HEALTHY.replace("import loadbell.locust  # noqa: F401\n", ""))
    proc = await locust(
        spawn, loadbell_env(app_server), f"{path},{spec.origin}", target, *headless("3s")
    )
    assert await proc.finish() == 0, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["result"]) == (3, "passed")
    assert len(events_of(hook, "test.starting")) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOADBELL_TRIGGER", "nightly"),
        ("LOADBELL_APDEX_T", "fast"),
        ("LOADBELL_REPORT_INTERVAL", "-1"),
        ("LOADBELL_MAX_FAIL_RATIO", "lots"),
    ],
)
async def test_a_bad_environment_value_never_stops_locust(
    app_server: Any,
    hook: RecordingReceiver,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
    variable: str,
    value: str,
) -> None:
    """A bad LOADBELL_* value is named in a warning and replaced by the default: Locust
    runs and the run is reported."""
    path = locustfile(tmp_path, HEALTHY)
    env = {**loadbell_env(app_server), variable: value}
    proc = await locust(spawn, env, path, target, *headless("2s"))
    assert await proc.finish() == 0, proc.stderr
    assert f"loadbell: ignoring {variable}={value!r}" in proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["result"], run["trigger"]) == (3, "passed", "manual")
    assert run["metrics"]["apdex_t_ms"] == 500


async def test_a_bad_flag_is_still_a_usage_error(
    spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """Typed on Locust's command line, a bad value stops it with a usage error."""
    path = locustfile(tmp_path, HEALTHY)
    proc = await locust(spawn, {}, path, target, *headless("2s"), "--loadbell-apdex-t", "fast")
    assert await proc.finish() == 2
    assert "--loadbell-apdex-t" in proc.stderr and "fast" in proc.stderr
