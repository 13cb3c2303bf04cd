"""`loadbell run -- <any command>`: the generic mode (JMeter, Gatling, Artillery, scripts)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loadbell.testing import RecordingReceiver

from .conftest import LOADBELL_BIN, loadbell_env, wait_for_event

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
    from conftest import free_port

    env = {"LOADBELL_URL": f"http://127.0.0.1:{free_port()}", "LOADBELL_TOKEN": "lb_x"}
    proc = await spawn(
        LOADBELL_BIN, "run", "--", sys.executable, "-c", "raise SystemExit(3)", env=env
    )
    assert await proc.finish() == 3
    assert proc.stderr.count("loadbell: cannot reach") == 1
