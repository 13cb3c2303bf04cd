"""Durable delivery through the real server and worker: retries, the attempt log,
redelivery, ordering per channel and run, isolation between channels, and list filters
that name what another organization owns."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import httpx
import pytest
from aiohttp import web

from api.support import (
    all_done,
    assert_error,
    create_webhook,
    list_deliveries,
    list_events,
    new_run,
    scoped_token,
    set_status,
    wait_deliveries,
)
from conftest import Server
from loadbell.domain.roles import Role
from loadbell.store import delivery_log
from loadbell.store.tables import MAX_ID
from loadbell.testing import Received, RecordingReceiver

FAST = {"base_delay": 0.2}  # seconds; keeps retries quick


async def _started(api: httpx.AsyncClient, **run: Any) -> int:
    r = await new_run(api, **run)
    await set_status(api, r["id"], 2)
    return int(r["id"])


async def test_retry_then_success_keeps_the_delivery_id(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A 500 then a 200 ends `succeeded` after two logged attempts with the same
    X-LoadImpact-ID, secrets masked in the log."""
    receiver.statuses = deque([500])
    receiver.body = "busy, come back later"
    channel = await create_webhook(
        api,
        f"{receiver.url}/hook/T0KEN",
        config={
            "url": f"{receiver.url}/hook/T0KEN",
            "format": "loadimpact",
            "headers": {"X-Token": "s3cret"},
        },
        retry=FAST,
    )
    run = await _started(api)
    [d] = await wait_deliveries(api, all_done, run_id=run)
    assert d["status"] == "succeeded"
    assert d["event_type"] == "test.started"
    assert d["channel_id"] == channel["id"] and d["run_id"] == run
    assert d["attempt_count"] == 2
    first, second = receiver.requests
    assert first.header("X-LoadImpact-ID") == second.header("X-LoadImpact-ID") == d["uuid"]
    assert first.body == second.body

    detail = (await api.get(f"/deliveries/{d['id']}")).json()
    a1, a2 = detail["attempts"]
    assert (a1["series"], a1["number"], a1["outcome"]) == (1, 1, "retry")
    assert (a2["series"], a2["number"], a2["outcome"]) == (1, 2, "delivered")
    assert (a1["response_status"], a2["response_status"]) == (500, 200)
    assert a1["response_body"] == "busy, come back later"
    assert a1["error"] is not None and "500" in a1["error"]
    assert a2["error"] is None
    for a in (a1, a2):
        assert a["started_at"] is not None and a["duration_ms"] > 0
        assert a["request_headers"]["X-Token"] == "****"
        assert a["request_headers"]["X-LoadImpact-ID"] == d["uuid"]
        assert a["request_headers"]["X-LoadImpact-Event"] == "test.started"
        assert a["request_url"] == f"{receiver.url}/****"
    assert a2["started_at"] > a1["started_at"]
    assert "s3cret" not in str(detail) and "T0KEN" not in str(detail)


async def test_retries_stop_after_max_attempts_then_redeliver(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A dead endpoint fails after the configured attempts; a redeliver after the fix starts a
    new series on the same delivery and succeeds with the same id."""
    receiver.status = 502
    await create_webhook(api, f"{receiver.url}/hook", retry={"max_attempts": 3, "base_delay": 0.1})
    run = await _started(api)
    [d] = await wait_deliveries(api, all_done, run_id=run)
    assert (d["status"], d["attempt_count"], d["series"]) == ("failed", 3, 1)
    assert [a["number"] for a in d["attempts"]] == [1, 2, 3]

    receiver.status = 200
    r = await api.post(f"/deliveries/{d['id']}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending" and r.json()["series"] == 2
    [d] = await wait_deliveries(api, all_done, run_id=run)
    assert (d["status"], d["series"], d["attempt_count"]) == ("succeeded", 2, 1)
    assert [(a["series"], a["number"]) for a in d["attempts"]] == [(1, 1), (1, 2), (1, 3), (2, 1)]
    assert len(receiver.requests) == 4
    assert {g.header("X-LoadImpact-ID") for g in receiver.requests} == {d["uuid"]}

    # A succeeded delivery may be redelivered too (the receiver lost it).
    r = await api.post(f"/deliveries/{d['id']}/redeliver")
    assert r.status_code == 202
    [d] = await wait_deliveries(api, lambda i: all_done(i) and i[0]["series"] == 3, run_id=run)
    assert d["status"] == "succeeded" and len(receiver.requests) == 5
    assert_error(await api.post("/deliveries/999999/redeliver"), 404)


async def test_retry_after_is_honoured(api: httpx.AsyncClient, receiver: RecordingReceiver) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by about a second, not base_delay."""
    answers = deque([web.Response(status=429, headers={"Retry-After": "1"})])

    def handler(_: Received) -> web.Response:
        return answers.popleft() if answers else web.Response(status=200, text="ok")

    receiver.handler = handler
    await create_webhook(api, f"{receiver.url}/hook", retry={"base_delay": 0.05})
    run = await _started(api)
    [d] = await wait_deliveries(api, all_done, run_id=run)
    assert d["status"] == "succeeded"
    first, second = receiver.requests
    assert 0.9 <= second.at - first.at < 3.0


async def test_finished_never_overtakes_a_retried_started(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """While test.started is being retried, the same run's test.finished waits its turn; the
    channel sees started, started again, then finished."""
    failed_once: set[str] = set()

    def handler(r: Received) -> web.Response:
        event = r.json()["event"]
        if event == "test.started" and event not in failed_once:
            failed_once.add(event)
            return web.Response(status=503, text="warming up")
        return web.Response(status=200, text="ok")

    receiver.handler = handler
    await create_webhook(api, f"{receiver.url}/hook", retry={"base_delay": 0.5})
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    await set_status(api, run["id"], 3)  # staged while started waits for its retry
    items = await wait_deliveries(api, lambda i: len(i) == 2 and all_done(i), run_id=run["id"])
    assert [d["status"] for d in items] == ["succeeded", "succeeded"]
    assert [g.json()["event"] for g in receiver.requests] == [
        "test.started",
        "test.started",
        "test.finished",
    ]
    assert receiver.requests[2].at - receiver.requests[0].at >= 0.45


async def test_order_holds_per_run_not_across_runs(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A run stuck in retries holds back only its own later events, not another run's."""

    def handler(r: Received) -> web.Response:
        body = r.json()
        return web.Response(status=500 if body["load_test_run_id"] == stuck else 200)

    receiver.handler = handler
    await create_webhook(api, f"{receiver.url}/hook", retry={"base_delay": 5.0})
    stuck = -1
    stuck = await _started(api)
    await set_status(api, stuck, 3)
    free = await _started(api)
    await set_status(api, free, 3)
    items = await wait_deliveries(
        api, lambda i: [d["status"] for d in i] == ["succeeded", "succeeded"], run_id=free
    )
    assert [d["event_type"] for d in items] == ["test.started", "test.finished"]
    held = await list_deliveries(api, run_id=stuck)
    assert [(d["event_type"], d["attempt_count"]) for d in held] == [
        ("test.started", 1),
        ("test.finished", 0),
    ]


async def test_dead_endpoint_does_not_hold_up_other_channels(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Channel A's endpoint hangs on every request; channel B still gets each notification
    at once."""
    release = asyncio.Event()

    async def hang(_: Received) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    async with RecordingReceiver(handler=hang) as dead:
        try:
            await create_webhook(api, f"{dead.url}/a", name="A", retry={"timeout": 20})
            await create_webhook(api, f"{receiver.url}/b", name="B")
            runs = 17  # one more than per_channel_concurrency (16): A fills all its slots
            started = time.monotonic()
            for _ in range(runs):
                await _started(api)
            await receiver.wait_for(runs, timeout=15)
            # Had B waited behind A, nothing would reach B before A's 20 s timeouts.
            assert time.monotonic() - started < 15
            assert len(dead.requests) >= 1
            await wait_deliveries(api, lambda i: len(i) == runs, status="succeeded")
            pending = await list_deliveries(api, status="pending")
            assert len(pending) == runs  # all of A's
        finally:
            release.set()  # before the receiver stops, so its shutdown need not wait


async def test_client_error_is_final_and_lists_filter(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A 400 fails a delivery after exactly one attempt; GET /deliveries filters by channel,
    run and status, alone and combined."""
    receiver.handler = lambda r: web.Response(status=400 if r.path == "/bad" else 200)
    good = await create_webhook(api, f"{receiver.url}/good", name="good")
    bad = await create_webhook(api, f"{receiver.url}/bad", name="bad", retry=FAST)
    one = await _started(api)
    two = await _started(api, name="other")
    await wait_deliveries(api, lambda i: len(i) == 4 and all_done(i))

    def ids(items: list[dict[str, Any]]) -> set[tuple[int, int | None, str]]:
        return {(d["channel_id"], d["run_id"], d["status"]) for d in items}

    g, b = good["id"], bad["id"]
    cases: list[tuple[dict[str, Any], set[tuple[int, int | None, str]]]] = [
        ({"channel_id": g}, {(g, one, "succeeded"), (g, two, "succeeded")}),
        ({"run_id": one}, {(g, one, "succeeded"), (b, one, "failed")}),
        ({"status": "failed"}, {(b, one, "failed"), (b, two, "failed")}),
        ({"channel_id": b, "run_id": two}, {(b, two, "failed")}),
        ({"channel_id": g, "run_id": two, "status": "succeeded"}, {(g, two, "succeeded")}),
        ({"channel_id": g, "status": "failed"}, set()),
        ({"status": "pending"}, set()),
    ]
    for params, expected in cases:
        assert ids(await list_deliveries(api, **params)) == expected, params
    for d in await list_deliveries(api, channel_id=b):
        assert (d["status"], d["attempt_count"], d["last_status_code"]) == ("failed", 1, 400)
        assert [a["outcome"] for a in d["attempts"]] == ["failed"]
    await asyncio.sleep(0.4)  # twice the retry delay: no second attempt comes
    assert len([g for g in receiver.requests if g.path == "/bad"]) == 2
    assert_error(await api.get("/deliveries", params={"status": "lost"}), 422, "status")
    ordered = await list_deliveries(api, run_id=one)
    assert [d["id"] for d in ordered] == sorted(d["id"] for d in ordered)


async def test_bulk_redeliver_failed_since(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """POST /deliveries/redeliver-failed restarts exactly the failures since the given time,
    and they succeed once the receiver is fixed."""
    broken = {"on": True}
    receiver.handler = lambda r: web.Response(status=400 if broken["on"] else 200)
    await create_webhook(api, f"{receiver.url}/hook", name="flaky")
    await _started(api)
    await _started(api, name="second")
    await wait_deliveries(api, lambda i: len(i) == 2 and all_done(i), status="failed")
    broken["on"] = False
    later = "2999-01-01T00:00:00Z"
    r = await api.post("/deliveries/redeliver-failed", json={"organization_id": 1, "since": later})
    assert r.status_code == 202 and r.json()["redelivered"] == 0, r.text
    r = await api.post(
        "/deliveries/redeliver-failed",
        json={"organization_id": 1, "since": "2000-01-01T00:00:00Z"},
    )
    assert r.status_code == 202 and r.json()["redelivered"] == 2, r.text
    done = await wait_deliveries(api, lambda i: len(i) == 2, status="succeeded")
    assert {d["series"] for d in done} == {2}
    assert_error(
        await api.post("/deliveries/redeliver-failed", json={"organization_id": 1}), 422, "since"
    )


async def test_bulk_redeliver_skips_deleted_channels(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A removed channel's failed deliveries stay failed: nothing is sent to it again."""
    receiver.handler = lambda r: web.Response(status=400)
    await create_webhook(api, f"{receiver.url}/kept", name="kept")
    removed = await create_webhook(api, f"{receiver.url}/removed", name="removed")
    await _started(api)
    await wait_deliveries(api, lambda i: len(i) == 2 and all_done(i), status="failed")
    assert (await api.delete(f"/channels/{removed['id']}")).status_code == 204
    r = await api.post(
        "/deliveries/redeliver-failed",
        json={"organization_id": 1, "since": "2000-01-01T00:00:00Z"},
    )
    assert r.status_code == 202 and r.json()["redelivered"] == 1, r.text
    [again] = r.json()["ids"]
    assert (await api.get(f"/deliveries/{again}")).json()["channel_id"] != removed["id"]


async def test_list_filters_naming_another_organizations_ids_are_404(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """A delivery or event list filtered by a channel, run or project of another
    organization answers the 404 that reading that id answers, not an empty list; the
    owner's own ids filter, a deleted channel's included."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    run = await _started(api)
    [delivery] = await wait_deliveries(api, all_done, run_id=run)
    r = await api.post("/organizations", json={"name": "Other Org"})
    assert r.status_code == 201, r.text
    token = await scoped_token(app_server.settings, r.json()["id"], Role.MEMBER)
    ch = channel["id"]
    cases = [
        # (the filtered list, the direct read whose 404 it must repeat)
        (("/deliveries", {"channel_id": ch}), f"/channels/{ch}"),
        (("/deliveries", {"run_id": run}), f"/runs/{run}"),
        (("/deliveries", {"channel_id": ch, "run_id": run}), f"/channels/{ch}"),
        (("/events", {"project_id": 1}), "/projects/1"),
        (("/events", {"run_id": run}), f"/runs/{run}"),
        (("/events", {"project_id": 1, "type": "test.started"}), "/projects/1"),
    ]
    async with app_server.client(token) as other:
        for (path, params), read in cases:
            direct = assert_error(await other.get(read), 404)
            assert assert_error(await other.get(path, params=params), 404) == direct, params
        # Unfiltered, the lists leave organization 1 out.
        assert (await other.get("/deliveries")).json()["items"] == []
        assert (await other.get("/events")).json()["items"] == []
    # The caller's own ids still filter.
    assert [d["id"] for d in await list_deliveries(api, channel_id=ch)] == [delivery["id"]]
    assert [d["id"] for d in await list_deliveries(api, run_id=run)] == [delivery["id"]]
    assert {e["type"] for e in await list_events(api, project_id=1, run_id=run)} == {"test.started"}
    # A deleted channel's history stays listed for its own organization.
    assert (await api.delete(f"/channels/{ch}")).status_code == 204
    assert_error(await api.get(f"/channels/{ch}"), 404)
    assert [d["id"] for d in await list_deliveries(api, channel_id=ch)] == [delivery["id"]]


async def test_list_filters_refuse_ids_no_row_can_have(api: httpx.AsyncClient) -> None:
    """An id filter or cursor outside 1..MAX_ID is a 422 naming it; an unknown event type
    or status is a 422 too; an id in range that no row has is a 404."""
    cases = [
        # (list, query, the field the 422 names)
        ("/deliveries", {"channel_id": MAX_ID + 1}, "channel_id"),
        ("/deliveries", {"run_id": 0}, "run_id"),
        ("/deliveries", {"before_id": 2**63}, "before_id"),
        ("/deliveries", {"run_id": 1, "after_id": -1}, "after_id"),
        ("/deliveries", {"event_type": "test.exploded"}, "event_type"),
        ("/deliveries", {"event_type": "test.\x00started"}, "event_type"),
        ("/events", {"project_id": MAX_ID + 1}, "project_id"),
        ("/events", {"run_id": -5}, "run_id"),
        ("/events", {"after_id": 2**31}, "after_id"),
        ("/events", {"type": "nothing"}, "type"),
    ]
    for path, params, field in cases:
        assert_error(await api.get(path, params=params), 422, field)
    for path, params in [
        ("/deliveries", {"channel_id": MAX_ID}),
        ("/deliveries", {"run_id": 999}),
        ("/events", {"project_id": 999}),
    ]:
        assert_error(await api.get(path, params=params), 404)


async def test_next_cursors_page_through_every_filter(
    api: httpx.AsyncClient, receiver: RecordingReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Following next_before_id (next_after_id with run_id) one delivery at a time gives the
    same deliveries, in the same order, as one big page, for each filter; with the bound on
    a page's reads made tiny, short and empty pages still lead on to every match."""
    receiver.handler = lambda r: web.Response(status=400 if r.path == "/bad" else 200)
    good = await create_webhook(api, f"{receiver.url}/good", name="good")
    bad = await create_webhook(api, f"{receiver.url}/bad", name="bad")
    runs = [await _started(api, name=f"r{i}") for i in range(3)]
    await wait_deliveries(api, lambda i: len(i) == 6 and all_done(i))
    cases: list[dict[str, Any]] = [
        {},
        {"status": "failed"},
        {"status": "succeeded", "event_type": "test.started"},
        {"channel_id": bad["id"]},
        {"channel_id": good["id"], "status": "failed"},  # none
        {"run_id": runs[1]},
        {"run_id": runs[1], "status": "failed"},
    ]
    whole = {}
    for params in cases:
        r = await api.get("/deliveries", params={**params, "limit": 500})
        assert r.status_code == 200, r.text
        assert r.json()["next_before_id"] is None and r.json()["next_after_id"] is None
        whole[str(params)] = [d["id"] for d in r.json()["items"]]
    assert len(whole["{}"]) == 6 and len(whole[str({"status": "failed"})]) == 3
    # Filters on the columns copied from the event (migration 0007) find the run updates'
    # deliveries, whichever path wrote them (on SQLite the run update writes inline).
    assert len(whole[str({"status": "succeeded", "event_type": "test.started"})]) == 3
    assert len(whole[str({"run_id": runs[1]})]) == 2
    monkeypatch.setattr(delivery_log, "SCAN", 2)
    for params in cases:
        cursor_field = "next_after_id" if "run_id" in params else "next_before_id"
        cursor_param = "after_id" if "run_id" in params else "before_id"
        got: list[int] = []
        cursor = None
        for _ in range(20):
            query = {**params, "limit": 1}
            if cursor is not None:
                query[cursor_param] = cursor
            r = await api.get("/deliveries", params=query)
            assert r.status_code == 200, r.text
            got += [d["id"] for d in r.json()["items"]]
            cursor = r.json()[cursor_field]
            if cursor is None:
                break
        assert got == whole[str(params)], params
