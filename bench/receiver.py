"""A silent, fast HTTP receiver for the benchmarks, run in its own process.

It answers every request with ``204`` after reading the body, counts requests, and on the
``/latency`` path records when the first request for each ``load_test_run_id`` arrived
(wall-clock seconds, ``time.time()``; the benchmark compares it with its own send schedule on
the same host). The raw loop and the worker drain post to ``/drain``, which does the same
work minus the JSON parse.

It is a bare HTTP/1.1 server: an asyncio protocol over ``httptools`` (the parser uvicorn
uses) on uvloop, with keep-alive, pipelining and chunked bodies, and nothing else. The
receiver stands for a webhook endpoint, which in production runs on another machine and
costs loadbell's host nothing; here it shares the two cores with the worker and the
database. An aiohttp server spent 32-36 µs of CPU per request, a quarter of a core during
a drain, taken from PostgreSQL and the worker; this one spends 7-9 µs
(docs/decisions.md, D77).

Control endpoints (for the benchmark only):
``GET /_bench/stats`` -> ``{"count": n, "cpu": s, "last": t, "arrivals": {"<run id>": t, ...}}``
(``last``: when the latest counted request arrived, wall-clock seconds, 0 before the first),
``POST /_bench/reset`` clears both.

Run by hand: ``python -m bench.receiver --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import aiohttp
import httptools
import orjson

from bench.loop import run

ROOT = Path(__file__).resolve().parents[1]
MAX_BODY = 1024 * 1024  # bytes; a larger body is answered 413 and its connection closed


@dataclass
class Tally:
    count: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)
    cpu: float = 0.0  # CPU seconds the receiver process has used so far
    last: float = 0.0  # time.time() of the latest counted request (0: none yet)

    def reset(self) -> None:
        self.count = 0
        self.last = 0.0
        self.arrivals.clear()


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True).encode()
        return self._value


_DATE = _Date()


def _response(
    status: bytes, *, body: bytes = b"", json: bool = False, close: bool = False
) -> bytes:
    """A whole response: status line, headers and body."""
    head = [b"HTTP/1.1 " + status, b"Server: bench-receiver", b"Date: " + _DATE.now()]
    if json:
        head.append(b"Content-Type: application/json")
    if not status.startswith(b"204"):
        head.append(b"Content-Length: %d" % len(body))
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class ReceiverProtocol(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered in order."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._size = 0
        self._continue = False  # the client waits for "100 Continue" before its body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(_response(b"400 Bad Request", close=True), close=True)

    # -- the parser's callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._size = 0
        self._continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            self._continue = True

    def on_headers_complete(self) -> None:
        if self._continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= MAX_BODY:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._size > MAX_BODY:
            self._send(_response(b"413 Request Entity Too Large", close=True), close=True)
            return
        close = not self.parser.should_keep_alive()
        path = self._url.split(b"?", 1)[0]
        if path.startswith(b"/_bench/"):
            answer = self._control(path, self.parser.get_method(), close)
        else:
            answer = self._count(path, close)
        self._send(answer, close=close)

    # -- answers ---------------------------------------------------------------------------

    def _count(self, path: bytes, close: bool) -> bytes:
        tally = self.tally
        tally.count += 1
        now = tally.last = time.time()
        if path == b"/latency":
            try:
                run_id = orjson.loads(b"".join(self._body)).get("load_test_run_id")
            except (orjson.JSONDecodeError, AttributeError):
                return _response(b"400 Bad Request", close=close)
            if isinstance(run_id, int):
                tally.arrivals.setdefault(run_id, now)
        return _response(b"204 No Content", close=close)

    def _control(self, path: bytes, method: bytes, close: bool) -> bytes:
        tally = self.tally
        if path == b"/_bench/stats":
            body = orjson.dumps(
                {
                    "count": tally.count,
                    "cpu": time.process_time(),
                    "last": tally.last,
                    "arrivals": tally.arrivals,
                },
                option=orjson.OPT_NON_STR_KEYS,
            )
            return _response(b"200 OK", body=body, json=True, close=close)
        if path == b"/_bench/reset" and method == b"POST":
            tally.reset()
            return _response(b"204 No Content", close=close)
        return _response(b"404 Not Found", close=close)

    def _send(self, data: bytes, *, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if close:
            self.transport.close()


async def serve(port: int) -> None:
    tally = Tally()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ReceiverProtocol(tally), "127.0.0.1", port, backlog=1024
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="Port on 127.0.0.1.")
    args = parser.parse_args()
    try:
        run(serve(args.port))
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
            if self._proc.stdout is not None:
                self._proc.stdout.close()
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
