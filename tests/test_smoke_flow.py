"""The README's first example, as a test: a run notifies a webhook in the seed 000 format."""

from __future__ import annotations

import httpx

from loadbell.testing import RecordingReceiver


async def test_run_lifecycle_reaches_webhook(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A run that starts and finishes failed produces started and finished deliveries."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "project_id": None,
            "kind": "webhook",
            "name": "ci hook",
            "config": {
                "url": f"{receiver.url}/hook",
                "format": "loadimpact",
                "headers": {"X-Token": "s3cret"},
            },
            "events": ["test.started", "test.finished"],
        },
    )
    assert r.status_code == 201, r.text
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
    r = await api.patch(f"/runs/{run['id']}", json={"status": 3, "result": "failed"})
    assert r.status_code == 200, r.text
    got = await receiver.wait_for(2)
    assert [g.json()["event"] for g in got] == ["test.started", "test.finished"]
    assert got[0].header("X-Token") == "s3cret"
