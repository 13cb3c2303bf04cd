"""A silent, fast HTTP receiver for the benchmark, run in its own process.

It answers every POST with ``204`` after reading the body, counts requests, and on the
``/latency`` path records when the first request for each ``load_test_run_id`` arrived
(wall-clock seconds, ``time.time()``; the benchmark compares it with its own send schedule on
the same host). The raw loop and the worker drain post to ``/drain``, which does the same
work minus the JSON parse.

Control endpoints (for the benchmark only):
``GET /_bench/stats`` -> ``{"count": n, "cpu": s, "last": t, "arrivals": {"<run id>": t, ...}}``
(``last``: when the latest counted request arrived, wall-clock seconds, 0 before the first),
``POST /_bench/reset`` clears both.

Run by hand: ``python -m bench.receiver --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    count: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)
    cpu: float = 0.0  # CPU seconds the receiver process has used so far
    last: float = 0.0  # time.time() of the latest counted request (0: none yet)


def make_handler(tally: Tally) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        if path.startswith("/_bench/"):
            return control(request, path)
        tally.count += 1
        now = tally.last = time.time()
        if path == "/latency":
            run_id = orjson.loads(body).get("load_test_run_id")
            if isinstance(run_id, int):
                tally.arrivals.setdefault(run_id, now)
        return web.Response(status=204)

    def control(request: web.Request, path: str) -> web.StreamResponse:
        if path == "/_bench/stats":
            return web.Response(
                body=orjson.dumps(
                    {
                        "count": tally.count,
                        "cpu": time.process_time(),
                        "last": tally.last,
                        "arrivals": tally.arrivals,
                    },
                    option=orjson.OPT_NON_STR_KEYS,
                ),
                content_type="application/json",
            )
        if path == "/_bench/reset" and request.method == "POST":
            tally.count = 0
            tally.last = 0.0
            tally.arrivals.clear()
            return web.Response(status=204)
        return web.Response(status=404)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(make_handler(Tally()), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="Port on 127.0.0.1.")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port))
    except KeyboardInterrupt:
        pass


class ReceiverProcess:
    """Start ``python -m bench.receiver`` as a child process and talk to its control paths."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ReceiverProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # blocks until the socket is bound
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"the benchmark receiver did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    async def reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.url}/_bench/reset") as resp:
            resp.raise_for_status()

    async def stats(self, session: aiohttp.ClientSession) -> Tally:
        async with session.get(f"{self.url}/_bench/stats") as resp:
            resp.raise_for_status()
            data = orjson.loads(await resp.read())
        return Tally(
            count=int(data["count"]),
            cpu=float(data["cpu"]),
            last=float(data["last"]),
            arrivals={int(k): float(v) for k, v in data["arrivals"].items()},
        )


if __name__ == "__main__":
    main()
