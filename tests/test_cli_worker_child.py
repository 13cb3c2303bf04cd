"""``loadbell serve``'s delivery worker in a process of its own (``--worker process``, the
default): it delivers, is restarted when it dies, stops with serve, and stops by itself
when serve is killed; /healthz and /metrics report it. Real processes, both databases."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    LoadbellProcess,
    SpawnLoadbell,
    free_port,
    seed,
    until,
    webhook_channel,
    worker_env,
)
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import delivery_attempts
from loadbell.testing import RecordingReceiver

pytestmark = pytest.mark.slow


def _gone(pid: int) -> bool:
    """The process has exited (a zombie left to its new parent counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ValueError):
                if _parent_of(int(entry.name)) == pid:
                    found.append(int(entry.name))
    return found


class Serve:
    """A ``loadbell serve`` on a free port, with an API client for the seeded owner."""

    def __init__(self, proc: LoadbellProcess, port: int, token: str) -> None:
        self.proc, self.url = proc, f"http://127.0.0.1:{port}"
        self.api = httpx.AsyncClient(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(f"{self.url}/healthz")
            return r.status_code, r.json()

    async def healthy(self) -> dict[str, Any] | None:
        with contextlib.suppress(httpx.TransportError):
            status, body = await self.health()
            if status == 200:
                return body
        assert self.proc.proc.returncode is None, self.proc.output()
        return None

    async def send_run(self, rx: RecordingReceiver, name: str) -> None:
        """Start a run (a PATCH to running) and wait until its test.started reaches ``rx``."""
        before = len(rx.requests)
        r = await self.api.post("/runs", json={"project_id": 1, "load_test_name": name})
        assert r.status_code == 201, r.text
        r = await self.api.patch(f"/runs/{r.json()['id']}", json={"status": 2})  # running
        assert r.status_code == 200, r.text
        try:
            await rx.wait_for(before + 1, timeout=60)
        except TimeoutError:
            raise AssertionError(f"not delivered\n{self.proc.output()}") from None


@pytest.fixture
async def serve(
    settings: Settings, spawn_loadbell: SpawnLoadbell, receiver: RecordingReceiver
) -> AsyncIterator[Callable[..., Any]]:
    token = await seed(settings)
    started: list[Serve] = []

    async def start(*args: str, **env: str) -> Serve:
        port = free_port()
        proc = await spawn_loadbell(
            "serve", "--port", str(port), *args, env=worker_env(settings, **env)
        )
        s = Serve(proc, port, token)
        await until(s.healthy, "serve healthy")
        hook = webhook_channel(f"{receiver.url}/hook", events=["test.started"])
        if not started:
            assert (await s.api.post("/channels", json=hook)).status_code == 201
        started.append(s)
        return s

    yield start
    for s in started:
        await s.api.aclose()


async def _attempt_workers(settings: Settings) -> list[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(delivery_attempts.c.worker))
            return [r.worker for r in rows]
    finally:
        await engine.dispose()


async def test_by_default_the_worker_process_delivers(
    serve: Callable[..., Any], receiver: RecordingReceiver, settings: Settings
) -> None:
    """By default serve starts one worker process of its own, /healthz names its pid, and
    a run's notification is sent by that process, not by serve."""
    s = await serve()
    body = await s.healthy()
    assert body is not None and body["worker"] == "running", body
    child = body["worker_pid"]
    assert child != s.proc.pid and _parent_of(child) == s.proc.pid
    await s.send_run(receiver, "by-child")
    workers = await until(lambda: _attempt_workers(settings), "the attempt written")
    assert [w.split(":")[1] for w in workers] == [str(child)], workers


async def test_the_pipe_wakes_the_worker_process(
    serve: Callable[..., Any], receiver: RecordingReceiver
) -> None:
    """With the fallback poll an hour long, runs' notifications still go out at once: the
    poke serve writes to the pipe after each commit is what wakes its worker process, which
    neither LISTENs nor watches the SQLite file (D68)."""
    s = await serve(LOADBELL_POLL_SECONDS="3600")
    await s.send_run(receiver, "poked-1")
    await s.send_run(receiver, "poked-2")  # the worker waits again, and is woken again


async def test_metrics_have_the_worker_process_families_once(
    serve: Callable[..., Any], receiver: RecordingReceiver
) -> None:
    """serve's /metrics holds the worker process's figures: each family once (a valid
    exposition), the claims and deliveries under the worker process's own name."""
    s = await serve()
    child = (await s.healthy() or {})["worker_pid"]
    await s.send_run(receiver, "metrics")

    async def scraped() -> dict[str, Any] | None:
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"{s.url}/metrics")).text
        names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
        assert len(names) == len(set(names)), "a family appears twice"
        families = {f.name: f for f in text_string_to_metric_families(text)}
        delivered = [
            x
            for x in families["loadbell_deliveries"].samples
            if x.name == "loadbell_deliveries_total" and x.labels["outcome"] == "delivered"
        ]
        return families if delivered else None

    families = await until(scraped, "the delivery counted in /metrics")
    delivered = [x for x in families["loadbell_deliveries"].samples if x.value > 0]
    assert {x.labels["process"].rsplit("-", 1)[1] for x in delivered} == {str(child)}
    up = {x.labels["process"]: x.value for x in families["loadbell_worker_up"].samples}
    assert list(up.values()) == [1.0] and next(iter(up)).endswith(f"-{child}"), up
    requests = families["loadbell_http_requests"].samples
    assert {x.labels["process"].rsplit("-", 1)[1] for x in requests} == {str(s.proc.pid)}


async def test_a_killed_worker_process_is_restarted(
    serve: Callable[..., Any], receiver: RecordingReceiver
) -> None:
    """The worker process killed with SIGKILL is started again (serve logs its exit status),
    /healthz names the new one, and notifications go out again."""
    s = await serve()
    first = (await s.healthy() or {})["worker_pid"]
    os.kill(first, signal.SIGKILL)
    line = await s.proc.wait_for_line(f"worker process {first} exited with status -9")
    assert "restarting it" in line

    async def replaced() -> int | None:
        body = await s.healthy()
        pid = body and body.get("worker_pid")
        return pid if pid and pid != first else None

    second = await until(replaced, "a new worker process")
    assert _parent_of(second) == s.proc.pid
    await s.send_run(receiver, "after-restart")


async def test_sigterm_stops_serve_and_its_worker_process(serve: Callable[..., Any]) -> None:
    """SIGTERM to serve stops its worker process too, and serve exits 0."""
    s = await serve()
    child = (await s.healthy() or {})["worker_pid"]
    s.proc.proc.send_signal(signal.SIGTERM)
    assert await s.proc.finish(timeout=60) == 0, s.proc.output()
    assert _gone(child)


async def test_worker_process_stops_by_itself_when_serve_is_killed(
    serve: Callable[..., Any],
) -> None:
    """With serve killed by SIGKILL (no chance to stop anything), its worker process sees
    the pipe from serve close and exits by itself."""
    s = await serve()
    child = (await s.healthy() or {})["worker_pid"]
    s.proc.proc.send_signal(signal.SIGKILL)
    await until(lambda: _gone(child), "the worker process gone", timeout=60)
    await s.proc.finish(timeout=60)  # its output pipes, which the child shared, closed too
    assert "serve is gone" in "".join(s.proc.stderr), s.proc.output()


@pytest.mark.parametrize(
    ("args", "worker"),
    [
        (("--worker", "inline"), "running"),  # today's worker in serve's own loop
        (("--worker", "none"), "not in this process"),
        (("--no-worker",), "not in this process"),  # the older spelling of none
    ],
)
async def test_inline_and_none_start_no_worker_process(
    serve: Callable[..., Any], args: tuple[str, ...], worker: str
) -> None:
    """--worker inline and --worker none (or --no-worker) start no process of their own;
    /healthz says where the worker is."""
    s = await serve(*args)
    body = await s.healthy()
    assert body is not None and body["worker"] == worker and "worker_pid" not in body, body
    assert _children(s.proc.pid) == []


async def test_inline_worker_is_serves_own(
    serve: Callable[..., Any], receiver: RecordingReceiver, settings: Settings
) -> None:
    """--worker inline delivers from serve's own process, as before."""
    s = await serve("--worker", "inline")
    await s.send_run(receiver, "inline")
    workers = await until(lambda: _attempt_workers(settings), "the attempt written")
    assert [w.split(":")[1] for w in workers] == [str(s.proc.pid)], workers
