"""Live reports: intermediate snapshots, threshold failures and "report available"."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import webhook_channel
from loadbell.testing import RecordingReceiver


async def _run(api: httpx.AsyncClient, status: int = 2) -> dict[str, Any]:
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    r = await api.patch(f"/runs/{run['id']}", json={"status": status})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _events(api: httpx.AsyncClient, run_id: int) -> list[dict[str, Any]]:
    r = await api.get("/events", params={"run_id": run_id})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_reports_are_stored_in_order_and_leave_final_metrics_alone(
    api: httpx.AsyncClient,
) -> None:
    """Each report is kept for the charts and emits one event; the run's metrics stay empty."""
    run = await _run(api)
    for n in (10, 25):
        r = await api.post(f"/runs/{run['id']}/reports", json={"metrics": {"requests": n}})
        assert r.status_code == 201, r.text
        assert r.json()["metrics"] == {"requests": n}
    series = (await api.get(f"/runs/{run['id']}/reports")).json()["items"]
    assert [s["metrics"]["requests"] for s in series] == [10, 25]
    assert series[0]["at"] <= series[1]["at"]
    assert (await api.get(f"/runs/{run['id']}")).json()["metrics"] == {}
    intermediate = [
        e for e in await _events(api, run["id"]) if e["type"] == "test.report_intermediate"
    ]
    assert len(intermediate) == 2
    # The event shows the snapshot as the run's metrics so every format renders the figures.
    assert intermediate[1]["context"]["run"]["metrics"] == {"requests": 25}
    assert intermediate[1]["context"]["extra"]["report"]["metrics"] == {"requests": 25}


async def test_reports_page_with_after_id(api: httpx.AsyncClient) -> None:
    """The series pages forward with after_id and next_after_id."""
    run = await _run(api)
    for n in range(3):
        await api.post(f"/runs/{run['id']}/reports", json={"metrics": {"requests": n}})
    first = (await api.get(f"/runs/{run['id']}/reports", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_after_id"] == first["items"][1]["id"]
    rest = (
        await api.get(f"/runs/{run['id']}/reports", params={"after_id": first["next_after_id"]})
    ).json()
    assert [i["metrics"]["requests"] for i in rest["items"]] == [2]
    assert rest["next_after_id"] is None


async def test_report_after_the_end_is_a_conflict(api: httpx.AsyncClient) -> None:
    """A finished run takes no more intermediate reports or threshold failures (409)."""
    run = await _run(api, status=3)
    r = await api.post(f"/runs/{run['id']}/reports", json={"metrics": {"requests": 1}})
    assert r.status_code == 409, r.text
    assert "already ended" in r.json()["message"]
    r = await api.post(
        f"/runs/{run['id']}/threshold-failures", json={"metric": "m", "expression": "rate<1"}
    )
    assert r.status_code == 409, r.text


async def test_threshold_failure_is_emitted_once_per_threshold(api: httpx.AsyncClient) -> None:
    """Repeats of the same (metric, expression) answer 200 and emit nothing new."""
    run = await _run(api)
    url = f"/runs/{run['id']}/threshold-failures"
    first = await api.post(url, json={"metric": "http_req_failed", "expression": "rate<0.01"})
    again = await api.post(url, json={"metric": "http_req_failed", "expression": "rate<0.01"})
    other = await api.post(url, json={"metric": "http_req_duration", "expression": "p(95)<500"})
    assert (first.status_code, first.json()["emitted"]) == (201, True)
    assert (again.status_code, again.json()["emitted"]) == (200, False)
    assert (other.status_code, other.json()["emitted"]) == (201, True)
    crossed = [e for e in await _events(api, run["id"]) if e["type"] == "test.threshold_failed"]
    assert [e["context"]["extra"]["threshold"]["expression"] for e in crossed] == [
        "rate<0.01",
        "p(95)<500",
    ]
    assert crossed[0]["context"]["extra"]["threshold"]["severity"] == "warning"


async def test_report_available_only_after_the_end_and_once(api: httpx.AsyncClient) -> None:
    """report-available is a 409 while the run goes on, then emits once with the run link."""
    run = await _run(api)
    url = f"/runs/{run['id']}/report-available"
    assert (await api.post(url)).status_code == 409
    await api.patch(f"/runs/{run['id']}", json={"status": 3, "result": "passed"})
    first = await api.post(url)
    assert first.status_code == 201, first.text
    assert first.json()["report_url"] == f"http://loadbell.test/runs/{run['id']}"
    assert (await api.post(url)).json()["emitted"] is False
    available = [e for e in await _events(api, run["id"]) if e["type"] == "test.report_available"]
    assert len(available) == 1
    assert available[0]["context"]["extra"]["report_url"].endswith(f"/runs/{run['id']}")


async def test_reports_of_another_organization_are_not_found(api: httpx.AsyncClient) -> None:
    """An unknown run is a 404 on every report endpoint."""
    for method, path, body in (
        ("POST", "/runs/999/reports", {"metrics": {}}),
        ("GET", "/runs/999/reports", None),
        ("POST", "/runs/999/threshold-failures", {"metric": "m"}),
        ("POST", "/runs/999/report-available", None),
    ):
        r = await api.request(method, path, json=body)
        assert r.status_code == 404, (path, r.text)


async def test_loadimpact_channels_cannot_subscribe_to_live_report_events(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """The k6/LoadImpact format cannot express the new events: subscribing is a 422."""
    for event in ("test.report_intermediate", "test.report_available", "test.threshold_failed"):
        r = await api.post("/channels", json=webhook_channel(receiver.url, events=[event]))
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "unsupported_event"
