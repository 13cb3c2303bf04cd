"""A database outage mid-drain: PostgreSQL stops for 15 s under ``loadbell serve`` and two
``loadbell worker`` processes. Nothing exits, the API says 503 meanwhile, and the drain
resumes by itself once the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web

from conftest import (
    LoadbellProcess,
    SpawnLoadbell,
    free_port,
    seed,
    stage_runs,
    start_server,
    webhook_channel,
    worker_env,
)
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import deliveries
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received
from pg_server import PgServer

pytestmark = pytest.mark.slow

CHANNELS = 10
RUNS = 100
BACKLOG = RUNS * 2 * CHANNELS  # 2,000 deliveries: each run starts and finishes
SLOTS = 8  # attempts in flight per process (LOADBELL_WORKER_CONCURRENCY): a drain of seconds
RECEIVER_DELAY = 0.02  # seconds per request
HOLD_AT = 400  # from this arrival on, the receiver answers only once the database is down
OUTAGE = 15.0  # seconds
ANSWER_WITHIN = 5.0  # seconds for an API answer during the outage: an answer, not a hang
# The change promises 2 s (backoff of at most a few seconds); the rest is for a slow machine.
RESUME_WITHIN = 10.0  # seconds from the database's return to the next new delivery
UNREACHABLE = "database unreachable"  # the worker's log line when an outage starts
REACHABLE = "database reachable again"  # ... and when it ends


class HoldUntilDown:
    """Answers each request after RECEIVER_DELAY, and from the HOLD_AT-th on only once the
    database is down: whatever the machine's speed, the outage starts mid-drain."""

    def __init__(self) -> None:
        self.arrived = 0
        self.db_down = asyncio.Event()

    async def __call__(self, _: Received) -> web.Response:
        self.arrived += 1
        await asyncio.sleep(RECEIVER_DELAY)
        if self.arrived >= HOLD_AT:
            # Bounded below the 10 s attempt timeout: a slow stop delays, never fails, these.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.db_down.wait(), 8)
        return web.Response(text="ok")


@dataclass
class Probe:
    """One API call during the outage."""

    path: str
    seconds: float
    status: int | None  # None: no answer (timeout or connection error)
    headers: httpx.Headers | None
    text: str

    def json(self) -> Any:
        with contextlib.suppress(ValueError):
            return httpx.Response(200, text=self.text).json()
        return None

    def __str__(self) -> str:
        return f"{self.path}: {self.status} after {self.seconds:.2f} s: {self.text[:300]!r}"


async def _probe(client: httpx.AsyncClient, path: str) -> Probe:
    started = time.monotonic()
    try:
        r = await client.get(path)
    except httpx.HTTPError as exc:
        return Probe(path, time.monotonic() - started, None, None, f"{exc!r}")
    return Probe(path, time.monotonic() - started, r.status_code, r.headers, r.text)


def _outage_problems(probe: Probe) -> list[str]:
    """What is wrong with an answer given while the database is down."""
    problems = []
    if probe.seconds > ANSWER_WITHIN:
        problems.append(f"took {probe.seconds:.1f} s (more than {ANSWER_WITHIN} s)")
    if probe.status != 503:
        problems.append("status is not 503")
    if "Traceback" in probe.text:
        problems.append("the body shows a traceback")
    body = probe.json()
    if probe.path == "/healthz":
        if not isinstance(body, dict) or body.get("database") != "unreachable":
            problems.append('the body has no "database": "unreachable"')
        return problems
    retry_after = probe.headers.get("Retry-After", "") if probe.headers else ""
    if not retry_after.isdigit():
        problems.append(f"Retry-After is {retry_after!r}, not a number of seconds")
    if not (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and isinstance(body.get("message"), str)
    ):
        problems.append('the body is not the JSON error {"error": ..., "message": ...}')
    return problems


def _lines(proc: LoadbellProcess, needle: str) -> list[int]:
    """Indexes of the process's stderr lines (its log) that mention ``needle``, any case."""
    return [i for i, line in enumerate(proc.stderr) if needle in line.lower()]


async def _logged(proc: LoadbellProcess, needle: str, timeout: float = 20) -> list[int]:
    """``_lines``, once there is one or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = _lines(proc, needle)
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def _serve(spawn: SpawnLoadbell, env: dict[str, str]) -> tuple[LoadbellProcess, str]:
    """``loadbell serve`` (with its worker) on a free port, returned once /healthz is 200."""
    port = free_port()
    proc = await spawn("serve", "--port", str(port), env=env)
    url = f"http://127.0.0.1:{port}"
    await proc.wait_for_line(f"on {url}", stream="stdout", timeout=60)
    async with httpx.AsyncClient(timeout=10) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return proc, url
            assert proc.proc.returncode is None, proc.output()
            await asyncio.sleep(0.05)
    raise AssertionError(f"loadbell serve never became healthy\n{proc.output()}")


async def _stage(settings: Settings, receiver_url: str) -> tuple[str, set[str]]:
    """Channels to the receiver and the backlog, through an API without a worker; returns
    the owner token and the staged delivery ids."""
    token = await seed(settings)
    # No worker runs while the backlog is staged: without this, LOADBELL_MAX_DUE_BACKLOG's
    # bound would refuse the staging itself at its end (api/due_backlog.py).
    staging = settings.model_copy(update={"max_due_backlog": 0})
    server, serving, url = await start_server(staging, run_worker=False)
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            for i in range(CHANNELS):
                r = await api.post("/channels", json=webhook_channel(f"{receiver_url}/{i}"))
                assert r.status_code == 201, r.text
            await stage_runs(api, RUNS, "outage")
    finally:
        server.should_exit = True
        await serving
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            staged = {r.uuid for r in await conn.execute(sa.select(deliveries.c.uuid))}
    finally:
        await engine.dispose()
    return token, staged


async def test_outage_mid_drain_is_ridden_out(
    pg_server: PgServer, spawn_loadbell: SpawnLoadbell, tmp_path: Path
) -> None:
    """With PostgreSQL down for 15 s in the middle of a 2,000-delivery drain, no process exits,
    /healthz and the API answer 503 at once (the API with Retry-After and a JSON error), each
    worker logs the outage's start and end once, and afterwards the API answers 200 and every
    delivery arrives."""
    settings = Settings(
        database_url=pg_server.url,
        secret_key="test-secret-key",
        secret_key_file=tmp_path / "unused.key",
        allow_private_targets=True,
    )
    env = worker_env(settings, LOADBELL_WORKER_CONCURRENCY=str(SLOTS))
    migrate = await spawn_loadbell("migrate", env=env)
    assert await migrate.finish(timeout=60) == 0, migrate.output()

    hold = HoldUntilDown()
    rx = RecordingReceiver(handler=hold)
    await rx.start()
    try:
        token, staged = await _stage(settings, rx.url)
        assert len(staged) == BACKLOG

        serve, url = await _serve(spawn_loadbell, env)
        workers = [await spawn_loadbell("worker", env=env) for _ in range(2)]
        for w in workers:
            await w.wait_for_line("started", timeout=60)
        processes = {"loadbell serve": serve, **{f"loadbell worker {w.pid}": w for w in workers}}

        await rx.wait_for(HOLD_AT, timeout=120)
        await pg_server.stop()
        down_at = time.monotonic()
        hold.db_down.set()

        probes: list[Probe] = []
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=3 * ANSWER_WITHIN
        ) as client:
            while time.monotonic() - down_at < OUTAGE:
                for path in ("/healthz", "/api/v1/runs"):
                    probes.append(await _probe(client, path))
                await asyncio.sleep(1.0)
        during = {r.header("X-LoadImpact-ID") for r in rx.requests}
        await pg_server.start()
        back_at = time.time()

        for name, proc in processes.items():
            assert proc.proc.returncode is None, (
                f"{name} (pid {proc.pid}) exited during the outage with code "
                f"{proc.proc.returncode}\n{proc.output()}"
            )
        wrong: dict[tuple[str, str], list[Probe]] = {}
        for probe in probes:
            if problems := _outage_problems(probe):
                wrong.setdefault((probe.path, "; ".join(problems)), []).append(probe)
        assert not wrong, "answers while the database was down:\n" + "\n".join(
            f"{len(seen)} of {path}: {problems}; the first: {seen[0]}"
            for (path, problems), seen in wrong.items()
        )
        assert len(during) < BACKLOG, (
            f"all {BACKLOG} deliveries had arrived before the database came back, so the test "
            "shows nothing about resuming: make the backlog larger or the receiver slower"
        )

        deadline = time.monotonic() + 120
        while not staged <= {r.header("X-LoadImpact-ID") for r in rx.requests}:
            for name, proc in processes.items():
                assert proc.proc.returncode is None, (
                    f"{name} (pid {proc.pid}) exited after the outage with code "
                    f"{proc.proc.returncode}\n{proc.output()}"
                )
            missing = len(staged - {r.header("X-LoadImpact-ID") for r in rx.requests})
            assert time.monotonic() < deadline, (
                f"{missing} of {BACKLOG} deliveries never arrived after the database came back "
                f"({len(during)} had arrived before)\n"
                + "\n".join(p.output() for p in processes.values())
            )
            await asyncio.sleep(0.1)
        resumed = min(r.at for r in rx.requests if r.header("X-LoadImpact-ID") not in during)
        print(
            f"{len(during)} of {BACKLOG} had arrived when the database came back; the next "
            f"new delivery {resumed - back_at:.2f} s later"
        )
        assert resumed - back_at <= RESUME_WITHIN, (
            f"the first new delivery came {resumed - back_at:.1f} s after the database was "
            f"back (at most {RESUME_WITHIN} s)"
        )

        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            after = [await _probe(client, "/api/v1/runs")]
            while after[-1].status != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                after.append(await _probe(client, "/api/v1/runs"))
            health = await _probe(client, "/healthz")
        assert after[-1].status == 200, "\n".join(map(str, after))
        assert {p.status for p in after} <= {503, 200}, "\n".join(map(str, after))
        assert health.status == 200 and health.json().get("worker") == "running", health

        for w in workers:
            up = await _logged(w, REACHABLE)
            down = _lines(w, UNREACHABLE)
            assert len(down) == 1 and len(up) == 1 and down[0] < up[0], (
                f"worker {w.pid} logged {len(down)} lines with {UNREACHABLE!r} and {len(up)} "
                f"with {REACHABLE!r} (one each, in that order)\n{w.output()}"
            )
        # At least: the API in the same process may log the outage too.
        assert await _logged(serve, REACHABLE) and _lines(serve, UNREACHABLE), (
            f"loadbell serve's worker logged no {UNREACHABLE!r} or {REACHABLE!r}\n{serve.output()}"
        )

        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert await serve.stop() in (0, -signal.SIGTERM), serve.output()
        for w in workers:
            assert await w.stop() == 0, w.output()
        for proc in processes.values():
            assert "Traceback" not in proc.output(), proc.output()
    finally:
        hold.db_down.set()  # before stopping: aiohttp waits for running handlers
        await rx.stop()
