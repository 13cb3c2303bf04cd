"""GET /runs narrows by status, result (none: no result yet) and trigger; a value that does
not exist is a 422 naming the parameter."""

from __future__ import annotations

import httpx

from api.support import assert_error, new_run, set_status


async def ids(api: httpx.AsyncClient, **params: object) -> list[int]:
    r = await api.get("/runs", params=params)
    assert r.status_code == 200, r.text
    return [run["id"] for run in r.json()["items"]]


async def test_runs_filter_by_status_result_and_trigger(api: httpx.AsyncClient) -> None:
    """Each filter alone and together selects exactly the matching runs, newest first."""
    passed = await new_run(api, name="checkout")
    await set_status(api, passed["id"], 3, result="passed")
    running = await new_run(api, name="search", trigger="scheduled")
    await set_status(api, running["id"], 2)
    failed = await new_run(api, name="checkout", trigger="scheduled")
    await set_status(api, failed["id"], 3, result="failed")

    assert await ids(api, status=3) == [failed["id"], passed["id"]]
    assert await ids(api, result="passed") == [passed["id"]]
    assert await ids(api, result="none") == [running["id"]]
    assert await ids(api, trigger="scheduled") == [failed["id"], running["id"]]
    assert await ids(api, trigger="scheduled", status=3) == [failed["id"]]
    assert await ids(api, trigger="manual", result="failed") == []
    assert await ids(api, load_test_id=passed["load_test_id"], trigger="scheduled") == [
        failed["id"]
    ]


async def test_unknown_filter_values_are_422(api: httpx.AsyncClient) -> None:
    """A status, result or trigger that does not exist names its parameter."""
    assert_error(await api.get("/runs", params={"status": 42}), 422, "status")
    assert_error(await api.get("/runs", params={"result": "green"}), 422, "result")
    assert_error(await api.get("/runs", params={"trigger": "cron"}), 422, "trigger")
