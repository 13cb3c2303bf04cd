"""Bad input: every error is JSON naming the field, and a refused request stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.support import assert_error, new_run, row_counts, set_status
from conftest import Server, webhook_channel
from loadbell.settings import Settings

MAX_BODY = 2048  # bytes; small so the 413 path is cheap to reach


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """The shared test settings with a small request body limit."""
    return Settings(
        database_url=db_url,
        secret_key="test-secret-key",
        secret_key_file=tmp_path / "unused.key",
        allow_private_targets=True,
        public_url="http://loadbell.test",
        max_body_bytes=MAX_BODY,
    )


@pytest.fixture
async def raw(app_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends bodies exactly as given (no JSON encoding by httpx)."""
    async with app_server.client() as client:
        client.headers["Content-Type"] = "application/json"
        yield client


async def test_malformed_json_is_400(
    api: httpx.AsyncClient, raw: httpx.AsyncClient, settings: Settings
) -> None:
    """A body that is not JSON gets a 400 JSON error on every writing endpoint."""
    run = await new_run(api)
    channel = await api.post("/channels", json=webhook_channel("http://127.0.0.1:9/hook"))
    before = await row_counts(settings)
    cases = [
        ("POST", "/runs", b'{"project_id": 1, "load_test_name": '),  # truncated
        ("PATCH", f"/runs/{run['id']}", b"{'status': 2}"),  # Python, not JSON
        ("POST", "/channels", b"not json at all"),
        ("PATCH", f"/channels/{channel.json()['id']}", b'{"name": "x",}'),  # trailing comma
        ("POST", "/projects", b"\xff\xfe"),  # not even UTF-8
    ]
    for method, path, body in cases:
        r = await raw.request(method, path, content=body)
        err = assert_error(r, 400)
        assert err["error"] == "malformed_json", path
        assert "JSON" in err["message"]
    assert await row_counts(settings) == before
    assert (await api.get(f"/runs/{run['id']}")).json()["status"] == -2


async def test_validation_errors_are_422_naming_the_field(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """A wrong type or an unknown field is a 422 whose `field` is the dotted path to it."""
    run = await new_run(api)
    before = await row_counts(settings)
    channel = webhook_channel("http://a.example")
    cases: list[tuple[str, str, Any, str]] = [
        # wrong types
        ("POST", "/runs", {"project_id": "one", "load_test_name": "x"}, "project_id"),
        ("POST", "/runs", {"project_id": 1, "load_test_name": 7}, "load_test_name"),
        ("PATCH", f"/runs/{run['id']}", {"status": "running"}, "status"),
        ("PATCH", f"/runs/{run['id']}", {"status": 2.5}, "status"),  # not a whole number
        ("PATCH", f"/runs/{run['id']}", {"status": 3, "metrics": [1, 2]}, "metrics"),
        ("PATCH", f"/runs/{run['id']}", {"status": 3, "result": "ok"}, "result"),
        ("POST", "/channels", {**channel, "name": 5}, "name"),
        ("POST", "/channels", {**channel, "config": "x"}, "config"),
        ("POST", "/channels", {**channel, "events": "all"}, "events"),
        ("POST", "/projects", {"organization_id": 1, "name": ["a"]}, "name"),
        ("POST", "/runs", [1, 2], "body"),  # not an object at all
        ("GET", "/deliveries?channel_id=abc", None, "channel_id"),  # a query parameter
        # unknown fields are refused, not silently ignored
        ("POST", "/runs", {"project_id": 1, "load_test_name": "x", "colour": "red"}, "colour"),
        ("PATCH", f"/runs/{run['id']}", {"status": 2, "stauts": 3}, "stauts"),  # a typo
        ("POST", "/channels", {**channel, "secret": "x"}, "secret"),
        (
            "POST",
            "/channels",
            {**channel, "config": {"url": "http://a.example", "u": 1}},
            "config.u",
        ),
    ]
    for method, path, body, field in cases:
        r = await api.request(method, path, json=body)
        err = assert_error(r, 422, field)
        assert err["message"].startswith(f"{field}: "), err
    assert await row_counts(settings) == before
    assert (await api.get(f"/runs/{run['id']}")).json()["status"] == -2

    # Wrong URLs and methods answer in the same JSON shape.
    err = assert_error(await api.get("/nothing-here"), 404)
    assert "/api/v1" in err["message"]
    assert_error(await api.put("/runs"), 405)
    assert_error(await api.get("/runs/999"), 404)


async def test_oversized_body_is_413(
    api: httpx.AsyncClient, raw: httpx.AsyncClient, settings: Settings
) -> None:
    """A body above max_body_bytes is refused with 413, declared or streamed, storing nothing."""
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    before = await row_counts(settings)
    metrics = {f"m{i}": i for i in range(400)}  # about 4 KB of JSON
    big = {"status": 3, "metrics": metrics}

    r = await api.patch(f"/runs/{run['id']}", json=big)  # with Content-Length
    err = assert_error(r, 413)
    assert str(MAX_BODY) in err["message"]

    async def chunks() -> AsyncIterator[bytes]:
        payload = httpx.Request("PATCH", "http://x", json=big).read()
        for i in range(0, len(payload), 512):
            yield payload[i : i + 512]

    r = await raw.patch(f"/runs/{run['id']}", content=chunks())  # chunked, no length
    assert "content-length" not in r.request.headers
    assert_error(r, 413)

    r = await api.post(
        "/channels", json=webhook_channel("http://a.example/" + "p" * MAX_BODY)
    )  # a different endpoint
    assert_error(r, 413)

    assert await row_counts(settings) == before
    after = (await api.get(f"/runs/{run['id']}")).json()
    assert (after["status"], after["metrics"]) == (2, {})
