"""LOADBELL_LOG_FORMAT=json: one JSON object per line, with the fields of delivery and API
lines."""

from __future__ import annotations

import io
import json
import logging
from collections import deque

import httpx
import pytest

from conftest import SpawnLoadbell, free_port, seed, webhook_channel, worker_env
from loadbell.cli.logs import JsonFormatter
from loadbell.settings import Settings
from loadbell.testing import RecordingReceiver


def test_json_lines_keep_fields_and_tracebacks_on_one_line() -> None:
    """A record's extra fields and its traceback go into one JSON object on one line."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("loadbell.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logger.exception("it failed: %s", "twice\nover", extra={"delivery_id": 7})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["level"] == "ERROR"
    assert doc["logger"] == "loadbell.test_json"
    assert doc["message"] == "it failed: twice\nover"
    assert doc["delivery_id"] == 7
    assert "ValueError: bad" in doc["exception"]
    assert doc["time"].endswith("+00:00")


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_serve_writes_json_lines_with_delivery_and_request_fields(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """A real `loadbell serve` with LOADBELL_LOG_FORMAT=json writes only JSON lines on stderr:
    a failed attempt's line carries the delivery, channel, kind, attempt and outcome; a
    request's line carries the request id that the X-Request-ID header returned."""
    token = await seed(settings)
    port = free_port()
    env = worker_env(settings, LOADBELL_LOG_FORMAT="json", LOADBELL_ACCESS_LOG="1")
    async with RecordingReceiver(statuses=deque([500])) as rx:
        proc = await spawn_loadbell("serve", "--port", str(port), env=env)
        await proc.wait_for_line("Application startup complete")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as api:
            r = await api.post("/channels", json=webhook_channel(f"{rx.url}/hook"))
            assert r.status_code == 201, r.text
            channel_id = r.json()["id"]
            r = await api.post("/runs", json={"project_id": 1, "load_test_name": "logs"})
            assert r.status_code == 201, r.text
            r = await api.patch(
                f"/runs/{r.json()['id']}", json={"status": 2}, headers={"X-Request-ID": "probe-7"}
            )
            assert r.status_code == 200, r.text
            assert r.headers["X-Request-ID"] == "probe-7"
            got = (await rx.wait_for(1, timeout=30))[0]
            await proc.wait_for_line('"outcome"', timeout=30)
        assert await proc.stop() == 0, proc.output()

    docs = [json.loads(line) for line in proc.stderr]  # every line is a JSON object
    for doc in docs:
        assert {"time", "level", "logger", "message"} <= doc.keys(), doc
    assert any(d["logger"].startswith("uvicorn") for d in docs), "uvicorn's lines are not JSON"
    (access,) = [d for d in docs if d.get("request_id") == "probe-7"]
    assert access["logger"] == "loadbell.access"
    assert (access["method"], access["status"]) == ("PATCH", 200)
    assert access["path"].startswith("/api/v1/runs/")
    (attempt,) = [d for d in docs if "outcome" in d]
    assert attempt["delivery_uuid"] == got.header("X-LoadImpact-ID")
    assert isinstance(attempt["delivery_id"], int)
    assert attempt["channel_id"] == channel_id
    assert attempt["channel_kind"] == "webhook"
    assert attempt["attempt"] == 1
    assert attempt["outcome"] == "pending"  # a 500 is retried
    assert attempt["status_code"] == 500
    assert "request_id" not in attempt  # the worker's lines belong to no request
