"""A ``k6cloud`` webhook end to end: Grafana's event identifiers as the channel's events, and
what a real receiver on 127.0.0.1 gets (headers, the Generic body, retries, one start and one
end per run). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import sqlalchemy as sa

from api.support import assert_error
from conftest import Server, webhook_channel
from loadbell.store.db import create_engine
from loadbell.store.tables import channels
from loadbell.testing import RecordingReceiver

SCHEMA = json.loads((Path(__file__).parents[2] / "src/loadbell/schemas/k6cloud.json").read_text())


def k6cloud_channel(url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    return webhook_channel(url, config={"url": url, "format": "k6cloud"}, events=events, **extra)


async def run_through(
    api: httpx.AsyncClient, name: str, final: int, result: str | None, trigger: str = "manual"
) -> int:
    """Start a run (Running) and end it with ``final``/``result``; returns its id."""
    run = (
        await api.post("/runs", json={"project_id": 1, "load_test_name": name, "trigger": trigger})
    ).json()
    assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
    end: dict[str, Any] = {"status": final}
    if result is not None:
        end["result"] = result
    assert (await api.patch(f"/runs/{run['id']}", json=end)).status_code == 200
    return int(run["id"])


async def test_identifiers_map_onto_events_and_filters(api: httpx.AsyncClient) -> None:
    """Grafana's identifiers are stored as the loadbell events they narrow plus a
    k6cloud_events filter; loadbell's own name takes an event whole."""
    body = k6cloud_channel(
        "http://127.0.0.1:9/hook",
        ["test.started.scheduled", "test.finished.failed", "test.finished.timed_out"],
    )
    r = await api.post("/channels", json=body)
    assert r.status_code == 201, r.text
    channel = r.json()
    assert channel["events"] == ["test.started", "test.finished"]
    assert channel["filters"] == {
        "test.started": {"k6cloud_events": ["test.started.scheduled"]},
        "test.finished": {"k6cloud_events": ["test.finished.failed", "test.finished.timed_out"]},
    }
    # A new selection replaces the stored one; a plain name drops its narrowing.
    r = await api.patch(
        f"/channels/{channel['id']}", json={"events": ["test.started", "test.finished.success"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["events"] == ["test.started", "test.finished"]
    assert r.json()["filters"] == {"test.finished": {"k6cloud_events": ["test.finished.success"]}}
    # Sending back what GET shows keeps it.
    shown = r.json()
    r = await api.patch(
        f"/channels/{channel['id']}", json={"events": shown["events"], "filters": shown["filters"]}
    )
    assert r.status_code == 200 and r.json()["filters"] == shown["filters"], r.text


@pytest.mark.parametrize(
    ("events", "field", "says"),
    [
        # loadbell's "Initializing" event: Grafana has no identifier for it
        (["test.started.manual", "test.starting"], "events[1]", "cannot express"),
        (["project.created"], "events[0]", "cannot express"),
        # commented out in Grafana's page ("not in frontend")
        (["test.finished.failed", "test.finished.all"], "events[1]", "test.finished.aborted_limit"),
        (["test.started.cron"], "events[0]", "Grafana Cloud k6"),
    ],
)
async def test_what_the_format_cannot_express_is_422(
    app_server: Server, events: list[str], field: str, says: str
) -> None:
    """Events and identifiers outside Grafana's table are refused, naming events[i]; nothing
    is stored."""
    async with app_server.client() as api:
        r = await api.post("/channels", json=k6cloud_channel("http://127.0.0.1:9/h", events))
        err = assert_error(r, 422, field)
        assert says in err["message"], err
    engine = create_engine(app_server.settings)
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(channels))).scalar()
    await engine.dispose()
    assert count == 0


async def test_identifiers_on_another_format_are_422(api: httpx.AsyncClient) -> None:
    """A loadimpact webhook does not take Grafana's identifiers, and says which format does."""
    body = webhook_channel("http://127.0.0.1:9/h", events=["test.finished.failed"])
    err = assert_error(await api.post("/channels", json=body), 422, "events[0]")
    assert "k6cloud" in err["message"]


async def test_identifiers_given_twice_are_422(api: httpx.AsyncClient) -> None:
    """Identifiers in events and a k6cloud_events filter for the same event: 422."""
    body = k6cloud_channel(
        "http://127.0.0.1:9/h",
        ["test.finished.failed"],
        filters={"test.finished": {"k6cloud_events": ["test.finished.success"]}},
    )
    assert_error(
        await api.post("/channels", json=body), 422, "filters.test.finished.k6cloud_events"
    )


async def deliveries_of(api: httpx.AsyncClient, channel_id: int) -> list[dict[str, Any]]:
    """The channel's deliveries, oldest first. They are staged in the transaction of the
    run's status change, so they are all there once the PATCH has answered."""
    r = await api.get("/deliveries", params={"channel_id": channel_id, "limit": 500})
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda d: d["id"])


async def test_delivery_headers_body_and_one_start_one_end(api: httpx.AsyncClient) -> None:
    """A run that starts and fails gives exactly one start and one end delivery, although
    the channel chose five identifiers that take it: X-k6cloud-ID is the delivery's uuid,
    X-k6cloud-Event the full identifier, the User-Agent K6CloudWebHook's, and each body is
    valid against the k6cloud schema."""
    async with RecordingReceiver() as rx:
        every = [
            "test.started.manual",
            "test.started.scheduled",
            "test.finished.finished",
            "test.finished.success",
            "test.finished.failed",
        ]
        r = await api.post("/channels", json=k6cloud_channel(f"{rx.url}/hook", every))
        assert r.status_code == 201, r.text
        channel_id = r.json()["id"]
        run_id = await run_through(api, "k6cloud-e2e", 3, "failed")
        # Aborted by user: none of the chosen identifiers takes its end.
        other_id = await run_through(api, "k6cloud-e2e-aborted", 5, None)
        staged = await deliveries_of(api, channel_id)
        assert [(d["run_id"], d["event_type"]) for d in staged] == [
            (run_id, "test.started"),
            (run_id, "test.finished"),
            (other_id, "test.started"),
        ]
        await rx.wait_for(3, timeout=30)
    by_id = {q.header("X-k6cloud-ID"): q for q in rx.requests}
    assert set(by_id) == {d["uuid"] for d in staged}
    start, end = (by_id[d["uuid"]] for d in staged[:2])
    assert start.header("X-k6cloud-Event") == "test.started.manual"
    assert end.header("X-k6cloud-Event") == "test.finished.failed"
    for request in rx.requests:
        assert (request.header("User-Agent") or "").startswith("K6CloudWebHook")
        assert request.header("Content-Type") == "application/json"
        body = request.json()
        jsonschema.validate(body, SCHEMA, cls=jsonschema.Draft202012Validator)
        assert body["event"]["type"] == request.header("X-k6cloud-Event")
    assert start.json()["test_run"]["name"] == "k6cloud-e2e"
    ended = end.json()
    assert (ended["status"], ended["result"], ended["result_text"], ended["color"]) == (
        3,
        1,
        "Failed",
        "red",
    )
    assert ended["test_run"]["test_ended"].endswith("Z")


async def test_selection_picks_the_ends_and_starts_chosen(api: httpx.AsyncClient) -> None:
    """A channel on test.started.scheduled and test.finished.timed_out gets a scheduled
    start and a timeout, and nothing of a manual run that passes."""
    async with RecordingReceiver() as rx:
        body = k6cloud_channel(
            f"{rx.url}/hook", ["test.started.scheduled", "test.finished.timed_out"]
        )
        r = await api.post("/channels", json=body)
        assert r.status_code == 201, r.text
        await run_through(api, "manual-pass", 3, "passed", trigger="manual")
        await run_through(api, "scheduled-timeout", 4, None, trigger="scheduled")
        staged = await deliveries_of(api, r.json()["id"])
        assert len(staged) == 2
        await rx.wait_for(2, timeout=30)
    assert [(q.json()["test_run"]["name"], q.header("X-k6cloud-Event")) for q in rx.requests] == [
        ("scheduled-timeout", "test.started.scheduled"),
        ("scheduled-timeout", "test.finished.timed_out"),
    ]
    assert rx.requests[0].json()["test_run"]["was_scheduled"] == "yes"


async def test_retries_keep_the_id(api: httpx.AsyncClient) -> None:
    """A delivery answered 500 is retried with the same X-k6cloud-ID and the same body."""
    async with RecordingReceiver() as rx:
        rx.statuses.extend([500])
        body = k6cloud_channel(f"{rx.url}/hook", ["test.started.manual"], retry={"max_delay": 1.0})
        assert (await api.post("/channels", json=body)).status_code == 201
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "retry"})).json()
        assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
        first, second = await rx.wait_for(2, timeout=60)
    assert first.header("X-k6cloud-ID") == second.header("X-k6cloud-ID")
    assert first.header("X-k6cloud-Event") == second.header("X-k6cloud-Event")
    assert first.body == second.body


async def test_test_hook_sends_made_up_values(api: httpx.AsyncClient) -> None:
    """The test hook reaches a k6cloud webhook with every field filled and event <any>."""
    async with RecordingReceiver() as rx:
        body = k6cloud_channel(f"{rx.url}/hook", ["test.finished.failed"])
        channel = (await api.post("/channels", json=body)).json()
        r = await api.post(f"/channels/{channel['id']}/test")
        assert r.status_code in (200, 201, 202), r.text
        (request,) = await rx.wait_for(1, timeout=30)
    assert request.header("X-k6cloud-Event") == "<any>"
    jsonschema.validate(request.json(), SCHEMA, cls=jsonschema.Draft202012Validator)


async def test_a_bad_filter_beside_identifiers_is_still_422(api: httpx.AsyncClient) -> None:
    """Identifiers in events do not hide a malformed filter: it is refused, named."""
    body = k6cloud_channel(
        "http://127.0.0.1:9/h", ["test.started.manual"], filters={"test.started": ["manual"]}
    )
    assert_error(await api.post("/channels", json=body), 422, "filters.test.started")


async def test_plain_name_beside_identifiers_takes_the_event_whole(
    api: httpx.AsyncClient,
) -> None:
    """test.finished with test.finished.failed: every end, and no filter is stored."""
    body = k6cloud_channel("http://127.0.0.1:9/h", ["test.finished", "test.finished.failed"])
    r = await api.post("/channels", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["events"] == ["test.finished"]
    assert r.json()["filters"] == {}
