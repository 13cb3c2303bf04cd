"""The Python client never raises into a load test: timeouts, a small retry, one warning."""

from __future__ import annotations

import asyncio
import io
from collections import deque
from typing import Any

import httpx
import pytest

from conftest import free_port
from loadbell.client import Client, RunReporter
from loadbell.testing import RecordingReceiver


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
