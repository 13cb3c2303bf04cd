"""The Python client never raises into a load test: timeouts, a small retry, one warning."""

from __future__ import annotations

import asyncio
import http.client
import io
import socket
import time
import uuid
from collections import deque
from typing import Any

import httpx
import pytest
from aiohttp import web

from conftest import free_port
from loadbell.client import Client, RunReporter
from loadbell.testing import RecordingReceiver

from .conftest import SilentServer, json_reply


def test_disabled_without_url_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LOADBELL_URL/TOKEN: every call is a quiet no-op."""
    monkeypatch.delenv("LOADBELL_URL", raising=False)
    monkeypatch.delenv("LOADBELL_TOKEN", raising=False)
    err = io.StringIO()
    client = Client(stderr=err)
    assert not client.enabled
    assert client.create_run("t") is None
    reporter = RunReporter(client)
    reporter.start("t")
    reporter.finish(3, "passed", {})
    assert reporter.close(1) and err.getvalue() == ""


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """URL, token and project come from LOADBELL_*; a trailing /api/v1 is accepted."""
    monkeypatch.setenv("LOADBELL_URL", "http://lb.example:8080/api/v1/")
    monkeypatch.setenv("LOADBELL_TOKEN", "lb_t")
    monkeypatch.setenv("LOADBELL_PROJECT", "7")
    client = Client()
    assert (client.base, client.token, client.project) == ("http://lb.example:8080", "lb_t", 7)


def test_server_down_warns_once_and_never_raises() -> None:
    """Connection refused: calls return None and only the first failure is printed."""
    err = io.StringIO()
    client = Client(f"http://127.0.0.1:{free_port()}", "lb_t", 1, timeout=1, stderr=err)
    reporter = RunReporter(client)
    reporter.start("t")
    reporter.status(2)
    reporter.report({"requests": 1})
    reporter.finish(3, "passed", {})
    assert reporter.close(10)
    assert client.update_run(1, status=2) is None
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0], lines


async def test_retries_a_503_then_succeeds() -> None:
    """A 503 is retried; the second answer counts and nothing is printed."""
    async with RecordingReceiver(statuses=deque([503]), body='{"id": 5}') as rx:
        err = io.StringIO()
        client = Client(rx.url, "lb_t", 1, stderr=err)
        answer = await asyncio.to_thread(client.report, 5, {"requests": 1})
        assert answer == {"id": 5}
        assert len(rx.requests) == 2 and err.getvalue() == ""
        assert rx.requests[0].header("Authorization") == "Bearer lb_t"
        assert rx.requests[0].path == "/api/v1/runs/5/reports"


async def test_a_4xx_is_not_retried_and_explained() -> None:
    """A refused request is sent once; the warning carries the server's message."""

    async with RecordingReceiver(
        status=401, body='{"error": "unauthorized", "message": "missing or invalid API token"}'
    ) as rx:
        err = io.StringIO()
        client = Client(rx.url, "lb_bad", 1, stderr=err)
        assert await asyncio.to_thread(client.create_run, "t") is None
        assert len(rx.requests) == 1
        assert "answered 401: missing or invalid API token" in err.getvalue()


async def test_reporter_against_a_real_server(app_server: Any, api: httpx.AsyncClient) -> None:
    """start/status/report/finish reach the server in order; the run ends with its metrics
    and the report link."""
    client = Client(app_server.url, app_server.token)  # no project: the first one visible
    reporter = RunReporter(client)

    def go() -> bool:
        reporter.start("client-test", trigger="scheduled")
        reporter.status(2)
        reporter.report({"requests": 5})
        reporter.threshold_failed("http_req_failed", "rate<0.01", 0.2)
        reporter.finish(3, "failed", {"requests": 9})
        return reporter.close(20)

    assert await asyncio.to_thread(go)
    run = (await api.get(f"/runs/{reporter.run_id}")).json()
    assert (run["status"], run["result"], run["trigger"]) == (3, "failed", "scheduled")
    assert run["metrics"] == {"requests": 9}
    assert reporter.run_url == f"http://loadbell.test/runs/{reporter.run_id}"
    types = [
        e["type"] for e in (await api.get("/events", params={"run_id": run["id"]})).json()["items"]
    ]
    assert types == [
        "test.starting",
        "test.started",
        "test.report_intermediate",
        "test.threshold_failed",
        "test.finished",
        "test.report_available",
    ]


def _report_a_whole_run(client: Client) -> tuple[RunReporter, bool, float]:
    """Every reporter call a wrapper makes; (reporter, close's answer, seconds it all took)."""
    started = time.monotonic()
    reporter = RunReporter(client)
    reporter.start("t")
    reporter.status(2)
    reporter.report({"requests": 1})
    reporter.threshold_failed("http_req_failed", "rate<0.01", 0.5)
    reporter.finish(3, "passed", {"requests": 2})
    closed = reporter.close(30)
    return reporter, closed, time.monotonic() - started


def test_hanging_server_costs_one_timeout_and_creates_once() -> None:
    """A server that accepts but never answers: the run creation waits one timeout, is not
    repeated (a repeat could create a second run), and nothing else is tried."""
    err = io.StringIO()
    with SilentServer() as server:
        client = Client(server.url, "lb_t", 1, timeout=1.5, stderr=err)
        reporter, closed, took = _report_a_whole_run(client)
        assert server.requests == ["POST /api/v1/runs"]
    assert closed and reporter.run_id is None
    assert took < 3.5, took
    assert err.getvalue().count("loadbell:") == 1 and "TimeoutError" in err.getvalue()


def test_server_hanging_after_the_run_was_created() -> None:
    """The first call that hangs opens the breaker: the next call is one short probe, and
    after it fails the remaining calls are skipped, so closing takes seconds, not minutes."""
    created = json_reply('{"id": 7, "url": "http://lb/runs/7"}', 201)

    def answer(line: str) -> bytes | None:
        return created if line.startswith("POST /api/v1/runs ") else None

    err = io.StringIO()
    with SilentServer(answer) as server:
        client = Client(server.url, "lb_t", 1, timeout=2, stderr=err)
        reporter, closed, took = _report_a_whole_run(client)
        assert server.requests == [
            "POST /api/v1/runs",
            "PATCH /api/v1/runs/7",  # Initializing: one full timeout, not retried
            "PATCH /api/v1/runs/7",  # Running: the probe, 1 s
        ]
    assert closed and reporter.run_id == 7
    assert took < 5, took
    assert err.getvalue().count("loadbell:") == 1


def test_breaker_closes_when_the_server_answers_again() -> None:
    """After a timeout the next call is a probe; once the server answers, calls are normal
    again."""
    answers = iter([None, json_reply('{"id": 1}'), json_reply('{"id": 1}')])
    with SilentServer(lambda line: next(answers)) as server:
        client = Client(server.url, "lb_t", 1, timeout=1, stderr=io.StringIO())
        results = [client.update_run(1, status=2) for _ in range(3)]
        assert len(server.requests) == 3
    assert results == [None, {"id": 1}, {"id": 1}]


def test_a_report_cut_off_midway_is_not_repeated() -> None:
    """The server closes the connection after reading a live report: it may have stored it,
    and a report has no idempotency key, so the client does not send it again."""
    with SilentServer(lambda line: b"") as server:
        client = Client(server.url, "lb_t", 1, timeout=2, stderr=io.StringIO())
        assert client.report(7, {"requests": 1}) is None
        assert server.requests == ["POST /api/v1/runs/7/reports"]


def test_a_create_cut_off_midway_is_repeated_with_its_key() -> None:
    """The server closes the connection after reading POST /runs: the client sends it
    again with the same Idempotency-Key, which makes the repeat safe."""
    answers = iter([b"", json_reply('{"id": 3}', 201)])
    with SilentServer(lambda line: next(answers)) as server:
        client = Client(server.url, "lb_t", 1, timeout=2, stderr=io.StringIO())
        assert client.create_run("t") == {"id": 3}
        assert server.requests == ["POST /api/v1/runs", "POST /api/v1/runs"]


async def test_a_create_retried_after_a_503_keeps_its_key() -> None:
    """Each create carries a fresh UUID as Idempotency-Key; its retry after a 503 carries
    the same one, and the next create a new one."""
    async with RecordingReceiver(statuses=deque([503]), status=201, body='{"id": 5}') as rx:
        client = Client(rx.url, "lb_t", 1, stderr=io.StringIO())
        assert await asyncio.to_thread(client.create_run, "t") == {"id": 5}
        assert await asyncio.to_thread(client.create_run, "t") == {"id": 5}
        keys = [r.header("Idempotency-Key") for r in rx.requests]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
    assert all(uuid.UUID(k) for k in keys)


async def test_an_overloaded_answer_is_retried_after_its_retry_after() -> None:
    """A 503 with Retry-After: 2 (more than the first backoff, 0.25 s) is retried no sooner
    than 2 s later."""
    answers = iter(
        [
            web.json_response({"error": "overloaded"}, status=503, headers={"Retry-After": "2"}),
            web.json_response({"id": 9}, status=201),
        ]
    )
    async with RecordingReceiver(handler=lambda received: next(answers)) as rx:
        client = Client(rx.url, "lb_t", 1, stderr=io.StringIO())
        assert await asyncio.to_thread(client.create_run, "t") == {"id": 9}
    first, second = rx.requests
    assert second.at - first.at >= 2.0


async def test_a_create_whose_answer_was_lost_makes_one_run(
    app_server: Any, api: httpx.AsyncClient
) -> None:
    """Through a proxy that drops the answer to the first POST /runs (the server made the
    run), the reporter's retry gets that same run: one run, which then moves on."""
    with LosingProxy(app_server.url) as proxy:
        client = Client(proxy.url, app_server.token, 1, stderr=io.StringIO())
        reporter = RunReporter(client)

        def go() -> bool:
            reporter.start("lost-answer")
            reporter.status(2)
            return reporter.close(20)

        assert await asyncio.to_thread(go)
        assert proxy.dropped == 1 and proxy.requests[:2] == ["POST /api/v1/runs"] * 2
    items = (await api.get("/runs")).json()["items"]
    assert [(r["id"], r["status"]) for r in items] == [(reporter.run_id, 2)]


class LosingProxy(SilentServer):
    """Forwards each request to ``upstream`` and relays the answer, except that the
    answer to the first ``POST /api/v1/runs`` is dropped: the connection is closed
    without a word after the upstream server has handled the request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.dropped = 0
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("Content-Length", "0"))
        while len(body) < length and (chunk := conn.recv(65536)):
            body += chunk
        method, path, _ = lines[0].split(" ")
        self.requests.append(f"{method} {path}")
        upstream = http.client.HTTPConnection(self.upstream, timeout=30)
        upstream.request(method, path, body or None, headers)
        answer = upstream.getresponse()
        payload = answer.read()
        upstream.close()
        if method == "POST" and path == "/api/v1/runs" and not self.dropped:
            self.dropped += 1
            conn.close()
            return
        conn.sendall(json_reply(payload.decode(), answer.status))
        conn.close()


def test_garbage_instead_of_http_never_raises() -> None:
    """An answer that is not HTTP at all is a failed call, not an exception."""
    with SilentServer(lambda line: b"SSH-2.0-OpenSSH_9.2\r\n") as server:
        client = Client(server.url, "lb_t", 1, timeout=2, stderr=io.StringIO())
        assert client.update_run(1, status=2) is None
