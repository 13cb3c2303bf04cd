"""Runs through the real server: creation, forward-only statuses, results, events.

Each test starts a server on both databases, so cheap cases share one test as a table
(a comment per row) instead of one server per case.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from api.support import assert_error, list_events, new_run, scoped_token, set_status
from conftest import Server
from loadbell.domain.roles import Role


async def test_create_with_load_test_id(api: httpx.AsyncClient) -> None:
    """POST /runs with an existing load_test_id starts a Created run of that load test."""
    r = await api.post("/load-tests", json={"project_id": 1, "name": "search"})
    assert r.status_code == 201, r.text
    lt = r.json()
    r = await api.post("/runs", json={"load_test_id": lt["id"], "trigger": "scheduled"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == -2
    assert run["status_text"] == "Created"
    assert run["load_test_id"] == lt["id"]
    assert run["load_test_name"] == "search"
    assert (run["project_id"], run["organization_id"]) == (1, 1)
    assert run["trigger"] == "scheduled"
    assert run["result"] is None
    assert isinstance(run["user_id"], int)
    assert (await api.get(f"/runs/{run['id']}")).json()["id"] == run["id"]
    assert len(await list_events(api, type="load_test.created")) == 1  # from POST /load-tests


async def test_create_by_name_creates_the_load_test_once(api: httpx.AsyncClient) -> None:
    """{project_id, load_test_name} creates the load test on first use and emits
    load_test.created once; later runs reuse it."""
    first = await new_run(api, name="checkout")
    second = await new_run(api, name=" checkout ")
    other = await new_run(api, name="login")
    assert first["load_test_id"] == second["load_test_id"] != other["load_test_id"]
    assert first["trigger"] == "manual"  # the default
    created = await list_events(api, type="load_test.created")
    assert sorted(e["load_test_id"] for e in created) == sorted(
        [first["load_test_id"], other["load_test_id"]]
    )
    assert created[-1]["context"]["load_test"]["name"] in ("checkout", "login")
    names = (await api.get("/load-tests", params={"project_id": 1})).json()["items"]
    assert sorted(n["name"] for n in names) == ["checkout", "login"]


async def test_statuses_move_forward_and_may_skip(api: httpx.AsyncClient) -> None:
    """Statuses may be skipped; only Initializing, Running and terminal statuses emit events."""
    run = await new_run(api)
    await set_status(api, run["id"], -1)  # Validated: no event
    await set_status(api, run["id"], 0)  # Queued: no event
    assert await list_events(api, run_id=run["id"]) == []
    running = await set_status(api, run["id"], 2)  # skips Initializing
    assert running["started_at"] is not None
    done = await set_status(api, run["id"], 8)
    assert done["status_text"] == "Aborted by threshold"
    assert done["ended_at"] is not None
    events = await list_events(api, run_id=run["id"])
    assert [e["type"] for e in events] == ["test.started", "test.finished"]
    timeline = (await api.get(f"/runs/{run['id']}")).json()["timeline"]
    assert [t["status"] for t in timeline] == [-2, -1, 0, 2, 8]

    other = await new_run(api)
    for status in (1, 2, 3):
        await set_status(api, other["id"], status)
    events = await list_events(api, run_id=other["id"])
    assert [e["type"] for e in events] == ["test.starting", "test.started", "test.finished"]
    assert [e["context"]["run"]["status"] for e in events] == [1, 2, 3]


async def test_repeated_status_is_idempotent(api: httpx.AsyncClient) -> None:
    """Sending the same status again answers 200 and emits no second event, terminal too."""
    run = await new_run(api)
    first = await set_status(api, run["id"], 2)
    again = await set_status(api, run["id"], 2)
    assert again["status"] == first["status"] == 2
    done = await set_status(api, run["id"], 3)
    done_again = await set_status(api, run["id"], 3)
    assert (done_again["status"], done_again["result"]) == (3, done["result"]) == (3, "passed")
    assert done_again["ended_at"] == done["ended_at"]
    events = await list_events(api, run_id=run["id"])
    assert [e["type"] for e in events] == ["test.started", "test.finished"]


async def test_refused_updates_explain_and_change_nothing(api: httpx.AsyncClient) -> None:
    """Backward moves and changes after the end are 409s, unknown codes and misplaced results
    422s; each says why, and the run and its events stay as they were."""
    cases: list[tuple[list[dict[str, Any]], dict[str, Any], int, str | None, str]] = [
        # (updates that set the run up, refused change, status, field, phrase in the message)
        ([{"status": 2}], {"status": 0}, 409, "status", "only move forward"),  # backward
        ([{"status": 1}], {"status": -2}, 409, "status", "cannot go back to -2 (Created)"),
        ([{"status": 3}], {"status": 5}, 409, "status", "already ended"),  # terminal to terminal
        ([{"status": 5}], {"status": 9}, 409, "status", "already ended"),  # a "higher" one too
        ([{"status": 3}], {"status": 2}, 409, "status", "already ended"),  # back after the end
        ([{"status": 3}], {"status": 3, "result": "failed"}, 409, None, "can no longer change"),
        ([{"status": 3}], {"result": "failed"}, 409, None, "can no longer change"),
        ([{"status": 3}], {"metrics": {"requests": 1}}, 409, None, "can no longer change"),
        ([], {"status": 10}, 422, "status", "9 Aborted by limit"),  # k6's "Interrupted"
        ([], {"status": 12}, 422, "status", "-2 Created"),  # seed 002's legacy-only code
        ([], {"status": -3}, 422, "status", "is not a run status"),
        ([{"status": 1}], {"status": 2, "result": "failed"}, 422, "result", "finishing status"),
        ([{"status": 1}], {"result": "passed"}, 422, "result", "finishing status"),
    ]
    for setup, change, code, field, phrase in cases:
        run = await new_run(api)
        for update in setup:
            await set_status(api, run["id"], **update)
        before = (await api.get(f"/runs/{run['id']}")).json()
        events = await list_events(api, run_id=run["id"])
        r = await api.patch(f"/runs/{run['id']}", json=change)
        body = assert_error(r, code, field)
        assert phrase in body["message"], (change, body)
        after = (await api.get(f"/runs/{run['id']}")).json()
        assert after == before, change
        assert await list_events(api, run_id=run["id"]) == events, change


async def test_default_result(api: httpx.AsyncClient) -> None:
    """A finishing update without a result gets its status's default; a given one wins."""
    cases = [
        (3, None, "passed"),  # Finished defaults to passed
        (3, "failed", "failed"),  # finished, but a threshold failed at the end
        (4, None, "failed"),  # timed out
        (5, None, "failed"),  # aborted by user
        (7, None, "failed"),  # aborted by script error
        (9, None, "failed"),  # aborted by limit
        (5, "passed", "passed"),  # an explicit result wins
    ]
    for status, given, stored in cases:
        run = await new_run(api)
        done = await set_status(api, run["id"], status, **({"result": given} if given else {}))
        assert done["result"] == stored, (status, given)
        [event] = await list_events(api, run_id=run["id"])
        assert event["context"]["run"]["result"] == stored


async def test_metrics_merge_and_runs_list_by_project(api: httpx.AsyncClient) -> None:
    """Metrics merge key by key across updates; GET /runs?project_id= lists newest first."""
    run = await new_run(api)
    await set_status(api, run["id"], 2, metrics={"requests": 10, "rps": 1.5})
    done = await set_status(api, run["id"], 3, metrics={"requests": 20, "p95_ms": 480.0})
    assert done["metrics"] == {"requests": 20, "rps": 1.5, "p95_ms": 480.0}
    later = await new_run(api, name="login")
    items = (await api.get("/runs", params={"project_id": 1})).json()["items"]
    assert [r["id"] for r in items] == [later["id"], run["id"]]
    r = await api.get("/runs", params={"project_id": 999})
    assert_error(r, 404)


async def test_bad_run_creation(api: httpx.AsyncClient) -> None:
    """Unknown references are 404s and incomplete bodies 422s; no load test is created."""
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"project_id": 999, "load_test_name": "x"}, 404, None),  # unknown project
        ({"load_test_id": 999}, 404, None),  # unknown load test
        ({"project_id": 1}, 422, "body"),  # name missing
        ({"load_test_name": "x"}, 422, "body"),  # project missing
        ({"project_id": 1, "load_test_name": ""}, 422, "load_test_name"),  # empty name
        ({"project_id": 1, "load_test_name": "x", "trigger": "cron"}, 422, "trigger"),
    ]
    for body, status, field in cases:
        assert_error(await api.post("/runs", json=body), status, field)
    assert (await api.get("/load-tests")).json()["items"] == []
    assert (await api.get("/runs")).json()["items"] == []


async def test_concurrent_repeats_emit_one_event(api: httpx.AsyncClient) -> None:
    """Many clients reporting the same status at once still produce a single event."""
    run = await new_run(api)
    for status in (2, 3):
        answers = await asyncio.gather(
            *(api.patch(f"/runs/{run['id']}", json={"status": status}) for _ in range(8))
        )
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    events = await list_events(api, run_id=run["id"])
    assert [e["type"] for e in events] == ["test.started", "test.finished"]
    timeline = (await api.get(f"/runs/{run['id']}")).json()["timeline"]
    assert [t["status"] for t in timeline] == [-2, 2, 3]


async def test_concurrent_first_use_creates_one_load_test(api: httpx.AsyncClient) -> None:
    """Runs started at once under a new load test name share one load test and one
    load_test.created event."""
    answers = await asyncio.gather(
        *(api.post("/runs", json={"project_id": 1, "load_test_name": "burst"}) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["load_test_id"] for a in answers}) == 1
    assert len(await list_events(api, type="load_test.created")) == 1


async def test_runs_filtered_by_another_organizations_load_test_is_404(
    api: httpx.AsyncClient, app_server: Server
) -> None:
    """Filtering the run list by a load test the caller cannot see answers 404, as reading
    that load test would, not an empty list."""
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "mine"})).json()
    r = await api.post("/organizations", json={"name": "Other Org"})
    token = await scoped_token(app_server.settings, r.json()["id"], Role.OWNER)
    async with app_server.client(token) as other:
        r = await other.get("/runs", params={"load_test_id": run["load_test_id"]})
        assert_error(r, 404)
        assert (await other.get("/runs")).json()["items"] == []
    r = await api.get("/runs", params={"load_test_id": run["load_test_id"]})
    assert [x["id"] for x in r.json()["items"]] == [run["id"]]
