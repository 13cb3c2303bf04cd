"""Real k6 and Locust processes against a local target, reporting to a real loadbell.

Every payload is checked as a webhook receiver gets it: a ``template`` webhook subscribed
to every run event sends the event name, the run and the event's extra facts.

These tests drive processes, not storage, so they run on SQLite only (the storage paths
they reach are covered on both databases by tests/api).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadbell.testing import RecordingReceiver

LOADBELL_BIN = str(Path(sys.executable).with_name("loadbell"))
LOCUST_BIN = str(Path(sys.executable).with_name("locust"))
RUN_EVENTS = [
    "test.starting",
    "test.started",
    "test.finished",
    "test.report_intermediate",
    "test.report_available",
    "test.threshold_failed",
]
TEMPLATE = (
    '{"event": {{ event | tojson }}, "run": {{ run | tojson }}, '
    '"extra": {{ extra | tojson }}, "severity": {{ summary.severity | tojson }}}'
)


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "loadbell.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(scope="session")
def target() -> Iterator[str]:
    """The system under test (/, /fail, /slow) in its own process; its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadbell.testing.target", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    yield url
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


@pytest.fixture
async def hook(api: httpx.AsyncClient) -> AsyncIterator[RecordingReceiver]:
    """A receiver behind a template webhook that subscribes to every run event."""
    async with RecordingReceiver() as rx:
        r = await api.post(
            "/channels",
            json={
                "organization_id": 1,
                "project_id": None,
                "kind": "webhook",
                "name": "everything",
                "config": {"url": f"{rx.url}/hook", "format": "template", "template": TEMPLATE},
                "events": RUN_EVENTS,
            },
        )
        assert r.status_code == 201, r.text
        yield rx


def payloads(rx: RecordingReceiver) -> list[dict[str, Any]]:
    return [r.json() for r in rx.requests]


async def wait_for_event(
    rx: RecordingReceiver, event: str, timeout: float = 20.0
) -> dict[str, Any]:
    """The first payload for ``event``; fails after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for p in payloads(rx):
            if p["event"] == event:
                return p
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} within {timeout} s; got {[p['event'] for p in payloads(rx)]}")


def events_of(rx: RecordingReceiver, event: str) -> list[dict[str, Any]]:
    return [p for p in payloads(rx) if p["event"] == event]


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    out: bytes = b""
    err: bytes = b""

    @property
    def stdout(self) -> str:
        return self.out.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.decode(errors="replace")

    def signal(self, signum: int = signal.SIGINT) -> None:
        self.proc.send_signal(signum)

    async def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit (killing the process after ``timeout`` s); the exit code."""
        try:
            self.out, self.err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.proc.kill()
            self.out, self.err = await self.proc.communicate()
            raise AssertionError(f"still running after {timeout} s\n{self.stderr}") from None
        code = self.proc.returncode
        assert code is not None
        return code


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start a command in ``tmp_path`` with pipes for stdout and stderr; killed at teardown."""
    started: list[Proc] = []

    async def go(*argv: str, env: dict[str, str] | None = None) -> Proc:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOADBELL_", "K6_"))}
        clean.update(env or {})
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=tmp_path,
            env=clean,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        handle = Proc(proc)
        started.append(handle)
        return handle

    yield go
    for handle in started:
        if handle.proc.returncode is None:
            handle.proc.kill()
            await handle.proc.communicate()


def loadbell_env(server: Any) -> dict[str, str]:
    return {"LOADBELL_URL": server.url, "LOADBELL_TOKEN": server.token, "LOADBELL_PROJECT": "1"}
