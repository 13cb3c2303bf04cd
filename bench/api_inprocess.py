"""CPU per ``PATCH /runs/{id}`` through the whole app, called in this process through ASGI:
no sockets, no uvicorn, no worker, one request after another.

    python -m bench.api_inprocess [--count 2000] [--rounds 3]

What ``serve``'s API process spends on a run update from the app's first layer to its
answer (FastAPI, loadbell's edge, the handler and its SQLite transaction), without what
the HTTP server, the client and the worker add around it, so a change to that path shows
with less noise than ``bench/api_path.py`` has on a shared machine. A fresh SQLite file,
one webhook channel subscribed to ``test.started`` (never contacted: nothing delivers),
``--count`` runs per round, each moved to Running once; the due-backlog refusal is off,
as the deliveries pile up. Figure: this process's CPU time (``time.process_time``: every
thread, the checkpointer's too) per request, per round.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
import orjson

from bench import databases, loop
from bench.api_path import _settings
from bench.latency import prepare_runs
from loadbell.app import create_app

WARM = 300  # run updates before the first round (caches, the routes' lazy set-up)


async def call(app: Any, method: str, path: str, token: str, body: bytes) -> int:
    """One request through ``app``; its status."""
    given = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return status


PATCH = b'{"status": 2}'  # each run to Running


@contextlib.asynccontextmanager
async def running_app(workdir: Path, runs: int) -> AsyncIterator[tuple[Any, str, list[int]]]:
    """The app on a fresh SQLite file in ``workdir``, started, with the first organization,
    ``runs`` runs and a webhook channel subscribed to ``test.started`` (never contacted);
    the app, the owner's token and the runs' ids."""
    async with databases.scratch_database("sqlite", workdir, "inprocess") as url:
        settings = _settings(url, workdir).model_copy(update={"max_due_backlog": 0})
        token = await databases.seed(settings)
        run_ids = await prepare_runs(settings, runs)
        app = create_app(settings, run_worker=False)
        async with app.router.lifespan_context(app):
            channel = {
                "organization_id": 1,
                "kind": "webhook",
                "name": "bench in-process",
                "config": {"url": "http://127.0.0.1:9/never", "format": "loadimpact"},
                "events": ["test.started"],
            }
            status = await call(app, "POST", "/api/v1/channels", token, orjson.dumps(channel))
            if status != 201:
                raise SystemExit(f"creating the channel answered {status}")
            yield app, token, run_ids


async def _bench(count: int, rounds: int) -> list[float]:
    workdir = Path(tempfile.mkdtemp(prefix="loadbell-api-inprocess-"))
    per_request: list[float] = []
    async with running_app(workdir, WARM + count * rounds) as (app, token, prepared):
        run_ids = iter(prepared)
        for _, run_id in zip(range(WARM), run_ids, strict=False):
            await call(app, "PATCH", f"/api/v1/runs/{run_id}", token, PATCH)
        for n in range(rounds):
            statuses: dict[int, int] = {}
            cpu = time.process_time()
            for _, run_id in zip(range(count), run_ids, strict=False):
                status = await call(app, "PATCH", f"/api/v1/runs/{run_id}", token, PATCH)
                statuses[status] = statuses.get(status, 0) + 1
            cpu = time.process_time() - cpu
            if statuses != {200: count}:
                raise click.ClickException(f"round {n + 1}: answers {statuses}")
            per_request.append(cpu / count * 1e6)
            click.echo(f"round {n + 1}: {per_request[-1]:.1f} µs of CPU per PATCH", err=True)
    return per_request


@click.command()
@click.option("--count", default=2000, show_default=True, help="Run updates per round.")
@click.option("--rounds", default=3, show_default=True, help="Rounds, one after the other.")
def main(count: int, rounds: int) -> None:
    """CPU per PATCH /runs/{id} through the app, in this process."""
    figures = loop.run(_bench(count, rounds))
    low, high = min(figures), max(figures)
    click.echo(f"{count:,} PATCHes × {rounds}: {low:.1f}-{high:.1f} µs of CPU per PATCH")


if __name__ == "__main__":
    main()
