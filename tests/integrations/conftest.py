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
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
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
    '"load_test": {{ load_test | tojson }}, '
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


def apdex_of(requests: Iterable[tuple[float, bool]], t_ms: float) -> Fraction:
    """The exact Apdex_T of ``(duration ms, failed)`` pairs, worked out here (not with
    loadbell's class) by loadbell's rule: a failure, or more than 4 T, is frustrated, more
    than T is tolerating, the rest is satisfied."""
    satisfied = tolerating = total = 0
    for duration, failed in requests:
        total += 1
        if failed or duration > 4 * t_ms:
            continue
        if duration > t_ms:
            tolerating += 1
        else:
            satisfied += 1
    assert total, "no requests to work out an Apdex from"
    return Fraction(2 * satisfied + tolerating, 2 * total)


def assert_apdex(reported: float, exact: Fraction) -> None:
    """``reported`` is ``exact`` rounded to 4 decimals: no more digits, and off by half a
    unit of the 4th at most (exactly half when ``exact`` is a tie)."""
    shown = Fraction(str(reported))  # the decimal the JSON carried, exactly
    assert (shown * 10_000).denominator == 1, f"apdex {reported} has more than 4 decimals"
    assert abs(shown - exact) <= Fraction(1, 20_000), (
        f"apdex {reported}, but the requests give {float(exact):.6f}"
    )


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


class SilentServer:
    """A server on 127.0.0.1 that accepts connections and reads each request, but answers
    only those ``answer`` returns bytes for (a whole HTTP response; ``b""`` closes the
    connection without a word). The others hang until the server closes: a loadbell
    server that is up but stuck. ``requests`` holds the request lines, in arrival order.
    """

    def __init__(self, answer: Callable[[str], bytes | None] = lambda line: None) -> None:
        self.answer = answer
        self.requests: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for header in head.split(b"\r\n")[1:]:
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length and (chunk := conn.recv(65536)):
            body += chunk  # read it all: closing on unread bytes would reset the connection
        line = head.split(b"\r\n", 1)[0].decode()
        self.requests.append(line.rsplit(" ", 1)[0])  # "POST /api/v1/runs"
        reply = self.answer(line)
        if reply is None:
            self._held.append(conn)  # never answered, closed with the server
            return
        if reply:
            conn.sendall(reply)
        conn.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._thread.join(5)
        for conn in self._held:
            conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_reply(body: str, status: int = 200) -> bytes:
    """A whole HTTP/1.1 response with a JSON body, for ``SilentServer``'s ``answer``."""
    raw = body.encode()
    return (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    ).encode() + raw
