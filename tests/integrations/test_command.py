"""`loadbell run -- <any command>`: the generic mode (JMeter, Gatling, Artillery, scripts)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from loadbell.testing import RecordingReceiver

from .conftest import LOADBELL_BIN, SilentServer, loadbell_env, wait_for_event

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("code", "status", "result"),
    [
        (0, 3, "passed"),  # exit 0: Finished, passed
        (1, 3, "failed"),  # non-zero: Finished, failed
        (42, 3, "failed"),  # any non-zero, and the wrapper exits with it
    ],
)
async def test_exit_code_decides_the_result(
    app_server: Any,
    hook: RecordingReceiver,
    spawn: Callable[..., Any],
    code: int,
    status: int,
    result: str,
) -> None:
    """The command's exit code maps to the result and is the wrapper's own exit code."""
    proc = await spawn(
        LOADBELL_BIN,
        "run",
        "--test",
        "nightly",
        "--",
        sys.executable,
        "-c",
        f"print('tool output'); raise SystemExit({code})",
        env=loadbell_env(app_server),
    )
    assert await proc.finish() == code, proc.stderr
    assert proc.stdout == "tool output\n"  # the command's output, unchanged
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["result"]) == (status, result)
    await wait_for_event(hook, "test.report_available")


async def test_metrics_file_fills_the_report(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any], tmp_path: Path
) -> None:
    """--metrics-file is read at the end; it is also sent as an intermediate report when it
    appears during the run."""
    script = tmp_path / "tool.py"
    script.write_text(
        "import json, time\n"
        "json.dump({'requests': 10, 'rps': 5.0}, open('m.json', 'w'))\n"
        "time.sleep(2.5)\n"
        "json.dump({'requests': 20, 'p95_ms': 120.0, 'error_rate': 0.0}, open('m.json', 'w'))\n"
    )
    proc = await spawn(
        LOADBELL_BIN,
        "run",
        "--metrics-file",
        "m.json",
        "--report-interval",
        "1",
        "--",
        sys.executable,
        str(script),
        env=loadbell_env(app_server),
    )
    assert await proc.finish() == 0, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert run["metrics"]["requests"] == 20 and run["metrics"]["p95_ms"] == 120.0
    assert run["metrics"]["duration_s"] > 2
    live = (await wait_for_event(hook, "test.report_intermediate"))["extra"]["report"]
    assert live["metrics"]["requests"] == 10


async def test_signal_is_aborted_by_user(
    app_server: Any, hook: RecordingReceiver, spawn: Callable[..., Any]
) -> None:
    """SIGINT to the wrapper is forwarded once; the run is Aborted by user and the wrapper
    exits like the command did (130 for a SIGINT death)."""
    proc = await spawn(
        LOADBELL_BIN,
        "run",
        "--",
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(30)",
        env=loadbell_env(app_server),
    )
    await wait_for_event(hook, "test.started")
    await asyncio.sleep(0.3)
    proc.signal(signal.SIGINT)
    assert await proc.finish() == 130, proc.stderr
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["status_text"]) == (5, "Aborted by user")


async def test_missing_command_exits_127(spawn: Callable[..., Any]) -> None:
    """A command that does not exist: a clear message and the shell's 127."""
    proc = await spawn(LOADBELL_BIN, "run", "--", "no-such-load-tool-xyz", "--flag")
    assert await proc.finish() == 127
    assert "cannot run 'no-such-load-tool-xyz'" in proc.stderr


async def test_server_down_keeps_the_exit_code(spawn: Callable[..., Any]) -> None:
    """With the server unreachable the command still runs and its exit code is kept."""
    env = {"LOADBELL_URL": f"http://127.0.0.1:{free_port()}", "LOADBELL_TOKEN": "lb_x"}
    proc = await spawn(
        LOADBELL_BIN, "run", "--", sys.executable, "-c", "raise SystemExit(3)", env=env
    )
    assert await proc.finish() == 3
    assert proc.stderr.count("loadbell: cannot reach") == 1


EXIT_3 = "import pathlib; pathlib.Path('exited').touch(); raise SystemExit(3)"


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("LOADBELL_PROJECT", "shop", "'shop' is not a valid integer"),
        ("LOADBELL_TRIGGER", "nightly", "'nightly' is not one of 'manual', 'scheduled'"),
        ("LOADBELL_REPORT_INTERVAL", "0.5", "0.5 is not in the range x>=1"),
        ("LOADBELL_APDEX_T", "fast", "'fast' is not a valid float"),
        ("LOADBELL_NO_APDEX", "maybe", "'maybe' is not a valid boolean"),
        ("LOADBELL_METRICS_FILE", ".", "is a directory"),
    ],
)
async def test_a_bad_environment_value_never_stops_the_test(
    app_server: Any,
    hook: RecordingReceiver,
    spawn: Callable[..., Any],
    variable: str,
    value: str,
    why: str,
) -> None:
    """A bad LOADBELL_* value is named in one warning and replaced by the default: the
    command runs, keeps its exit code, and the run is still reported."""
    env = {**loadbell_env(app_server), variable: value}
    proc = await spawn(LOADBELL_BIN, "run", "--", sys.executable, "-c", EXIT_3, env=env)
    assert await proc.finish() == 3, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("loadbell:")]
    [warning] = [line for line in notes if not line.startswith("loadbell: run ")]  # the link
    assert warning.startswith(f"loadbell: ignoring {variable}={value!r}"), warning
    assert why in warning and "keeps its default" in warning
    run = (await wait_for_event(hook, "test.finished"))["run"]
    assert (run["status"], run["result"], run["trigger"]) == (3, "failed", "manual")


async def test_a_bad_flag_is_still_a_usage_error(spawn: Callable[..., Any], tmp_path: Path) -> None:
    """Typed on the command line, the same bad value is a usage error (exit 2) as before:
    the user is there to read it."""
    proc = await spawn(
        LOADBELL_BIN, "run", "--trigger", "nightly", "--", sys.executable, "-c", EXIT_3
    )
    assert await proc.finish() == 2
    assert "Invalid value for '--trigger'" in proc.stderr
    assert not (tmp_path / "exited").exists()


@pytest.mark.parametrize(
    ("options", "env", "name", "trigger"),
    [
        (
            ["--test", "nightly-gatling", "--trigger", "scheduled"],
            {},
            "nightly-gatling",
            "scheduled",
        ),
        (
            [],
            {"LOADBELL_TEST": "from-env", "LOADBELL_TRIGGER": "scheduled"},
            "from-env",
            "scheduled",
        ),
        ([], {}, Path(sys.executable).name, "manual"),  # default: the command's name
    ],
)
async def test_load_test_name_and_trigger(
    app_server: Any,
    hook: RecordingReceiver,
    api: httpx.AsyncClient,
    spawn: Callable[..., Any],
    options: list[str],
    env: dict[str, str],
    name: str,
    trigger: str,
) -> None:
    """--test and --trigger (or LOADBELL_TEST and LOADBELL_TRIGGER) name the load test and
    set the run's trigger, as the receiver and the API show them."""
    proc = await spawn(
        LOADBELL_BIN,
        "run",
        *options,
        "--",
        sys.executable,
        "-c",
        "pass",
        env={**loadbell_env(app_server), **env},
    )
    assert await proc.finish() == 0, proc.stderr
    finished = await wait_for_event(hook, "test.finished")
    assert finished["load_test"]["name"] == name
    assert finished["run"]["trigger"] == trigger
    run = (await api.get(f"/runs/{finished['run']['id']}")).json()
    assert (run["load_test_name"], run["trigger"]) == (name, trigger)


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGTERM],  # a CI runner cancelling the job
        [signal.SIGINT, signal.SIGINT],  # Ctrl-C twice
        [signal.SIGHUP],
    ],
)
async def test_signals_after_the_command_exited_keep_its_exit_code(
    spawn: Callable[..., Any], tmp_path: Path, signals: list[int]
) -> None:
    """The command has exited and the wrapper waits for a stuck server: a signal stops the
    wait at once, and the wrapper still exits with the command's code (not 130 or 143)."""
    with SilentServer() as server:
        env = {"LOADBELL_URL": server.url, "LOADBELL_TOKEN": "lb_x", "LOADBELL_PROJECT": "1"}
        proc = await spawn(LOADBELL_BIN, "run", "--", sys.executable, "-c", EXIT_3, env=env)
        for _ in range(500):
            if (tmp_path / "exited").exists():
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the command is gone; POST /runs hangs for 5 s
        sent = time.monotonic()
        for signum in signals:
            with contextlib.suppress(ProcessLookupError):  # the first one may end it
                proc.signal(signum)
            await asyncio.sleep(0.1)
        assert await proc.finish(timeout=20) == 3, proc.stderr
        assert time.monotonic() - sent < 3
    assert "interrupted; not waiting for the last notifications" in proc.stderr


async def test_a_stuck_server_holds_the_wrapper_one_timeout(spawn: Callable[..., Any]) -> None:
    """A server that accepts connections but never answers costs the wrapper one 5 s
    timeout at the end, and the run is created at most once."""
    with SilentServer() as server:
        env = {"LOADBELL_URL": server.url, "LOADBELL_TOKEN": "lb_x", "LOADBELL_PROJECT": "1"}
        started = time.monotonic()
        proc = await spawn(LOADBELL_BIN, "run", "--", sys.executable, "-c", "pass", env=env)
        assert await proc.finish(timeout=40) == 0
        took = time.monotonic() - started
        assert server.requests == ["POST /api/v1/runs"]
    assert took < 8, took
    assert proc.stderr.count("loadbell: cannot reach") == 1


async def test_sigint_with_the_server_down(spawn: Callable[..., Any]) -> None:
    """Ctrl-C midway with nothing listening at LOADBELL_URL: the command is stopped once
    and the wrapper exits like it did (130 for a SIGINT death)."""
    env = {"LOADBELL_URL": f"http://127.0.0.1:{free_port()}", "LOADBELL_TOKEN": "lb_x"}
    proc = await spawn(
        LOADBELL_BIN,
        "run",
        "--",
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(30)",
        env=env,
    )
    await asyncio.sleep(1.5)
    proc.signal(signal.SIGINT)
    assert await proc.finish(timeout=20) == 130, proc.stderr
    assert proc.stderr.count("loadbell: cannot reach") == 1
