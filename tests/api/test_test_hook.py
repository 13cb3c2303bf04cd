"""POST /channels/{id}/test (the seed 000 test hook) and GET /healthz."""

from __future__ import annotations

import httpx

from api.support import assert_error, create_webhook, list_deliveries
from conftest import Server
from loadbell.testing import RecordingReceiver


async def test_test_hook_returns_the_first_attempt(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """The test hook answers with the first attempt's outcome, and the receiver got exactly
    {"event": "test.notification_channel"} with the seed 000 headers."""
    channel = await create_webhook(
        api,
        f"{receiver.url}/hook",
        config={
            "url": f"{receiver.url}/hook",
            "format": "loadimpact",
            "headers": {"X-Token": "s3cret"},
        },
        events=["test.finished"],  # the hook goes out whatever the channel subscribes to
    )
    r = await api.post(f"/channels/{channel['id']}/test")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True
    assert body["outcome"] == "delivered"
    assert body["response_status"] == 200
    assert body["response_body"] == "ok"
    assert body["error"] is None
    assert isinstance(body["delivery_id"], int) and isinstance(body["event_id"], int)

    [got] = receiver.requests
    assert got.method == "POST" and got.path == "/hook"
    assert got.json() == {"event": "test.notification_channel"}
    assert got.header("X-LoadImpact-Event") == "test.notification_channel"
    assert (got.header("User-Agent") or "").startswith("LoadImpactWebHook")
    assert got.header("Content-Type") == "application/json"
    assert got.header("X-Token") == "s3cret"

    [d] = await list_deliveries(api, channel_id=channel["id"])
    assert d["id"] == body["delivery_id"]
    assert d["event_type"] == "test.notification_channel"
    assert got.header("X-LoadImpact-ID") == d["uuid"]


async def test_test_hook_reports_a_failing_endpoint(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """When the endpoint answers 500 the hook says so, with the status and the body excerpt."""
    receiver.status = 500
    receiver.body = "kaputt"
    channel = await create_webhook(
        api, f"{receiver.url}/hook", retry={"max_attempts": 1}, enabled=False
    )
    r = await api.post(f"/channels/{channel['id']}/test")  # works on a disabled channel too
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False
    assert body["outcome"] == "failed"  # its only attempt: nothing left to retry
    assert "no attempts left" in body["error"]
    assert body["response_status"] == 500
    assert body["response_body"] == "kaputt"
    assert "500" in body["error"]
    assert_error(await api.post("/channels/999/test"), 404)


async def test_healthz(app_server: Server) -> None:
    """GET /healthz reports the database and the in-process worker, without a token."""
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{app_server.url}/healthz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "database": "ok", "worker": "running"}
