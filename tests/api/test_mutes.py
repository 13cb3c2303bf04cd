"""Mutes end to end: a real server and worker, a real receiver, both databases. A muted
event's deliveries are recorded suppressed with reason "muted" and never sent; mutes that
ended or were deleted let events through; the API checks what it stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from api.support import (
    all_done,
    assert_error,
    create_webhook,
    new_run,
    scoped_token,
    set_status,
    stored_rows,
    wait_deliveries,
)
from conftest import Server
from loadbell.domain.roles import Role
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import mutes
from loadbell.testing import RecordingReceiver

Items = list[dict[str, Any]]


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def _mute(api: httpx.AsyncClient, **scope: Any) -> dict[str, Any]:
    body = {"organization_id": 1, "until": _later(hours=1), "reason": "release freeze", **scope}
    r = await api.post("/mutes", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _finish(
    api: httpx.AsyncClient, channel_id: int, *, project_id: int = 1, name: str = "checkout"
) -> Items:
    """A run that starts and finishes (test.started, test.finished); returns the channel's
    deliveries of it once none is pending."""
    run = await new_run(api, project_id=project_id, name=name)
    await set_status(api, run["id"], 2)
    await set_status(api, run["id"], 3, result="failed")
    return await wait_deliveries(api, all_done, timeout=20, run_id=run["id"], channel_id=channel_id)


def _finished(items: Items) -> dict[str, Any]:
    [finished] = [d for d in items if d["event_type"] == "test.finished"]
    return finished


def _sent_ids(receiver: RecordingReceiver) -> set[str]:
    return {r.headers.get("X-LoadImpact-ID", "") for r in receiver.requests}


def _assert_muted(items: Items, receiver: RecordingReceiver) -> None:
    for d in items:
        assert d["status"] == "suppressed", d
        assert d["reason"] == "muted" and d["attempts"] == [], d
    assert not {d["uuid"] for d in items} & _sent_ids(receiver)


async def test_a_muted_load_test_is_suppressed_and_never_sent_until_unmuted(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """While its load test is muted, a run's test.finished is recorded suppressed with
    reason "muted" and never reaches the receiver; another load test's is sent; after
    DELETE the same load test's next run is sent."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    first = await new_run(api, name="checkout")  # makes the load test
    mute = await _mute(api, load_test_id=first["load_test_id"])
    assert mute["active"] is True and mute["load_test_id"] == first["load_test_id"]

    muted = await _finish(api, channel["id"], name="checkout")
    assert _finished(muted)["status"] == "suppressed"
    other = await _finish(api, channel["id"], name="search")
    assert {d["status"] for d in other} == {"succeeded"}
    # The worker has sent the later run's deliveries, and none of the muted one's.
    await receiver.wait_for(len(other))
    _assert_muted(muted, receiver)

    r = await api.delete(f"/mutes/{mute['id']}")
    assert r.status_code == 204, r.text
    assert_error(await api.delete(f"/mutes/{mute['id']}"), 404)
    assert_error(await api.get(f"/mutes/{mute['id']}"), 404)
    again = await _finish(api, channel["id"], name="checkout")
    assert _finished(again)["status"] == "succeeded"
    assert _finished(again)["uuid"] in _sent_ids(receiver)


async def _end_now(settings: Settings, mute_id: int) -> None:
    """Move a mute's end into the past, as time passing would."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(mutes)
                .where(mutes.c.id == mute_id)
                .values(until=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


async def test_an_ended_mute_lets_events_through_and_lists_as_ended(
    app_server: Server, api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A mute whose until has passed matches nothing: the next run is sent; it leaves
    GET /mutes (active) and shows in GET /mutes?active=false with active false."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    mute = await _mute(api)  # the whole organization
    assert _finished(await _finish(api, channel["id"]))["reason"] == "muted"
    await _end_now(app_server.settings, mute["id"])

    sent = await _finish(api, channel["id"])
    assert {d["status"] for d in sent} == {"succeeded"}
    assert (await api.get("/mutes")).json()["items"] == []
    [ended] = (await api.get("/mutes", params={"active": "false"})).json()["items"]
    assert ended["id"] == mute["id"] and ended["active"] is False


async def test_a_channel_mute_silences_that_channel_only(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A mute naming a channel suppresses that channel's deliveries; another channel
    subscribed to the same events still gets them."""
    quiet = await create_webhook(api, f"{receiver.url}/quiet", name="quiet")
    loud = await create_webhook(api, f"{receiver.url}/loud", name="loud")
    await _mute(api, channel_id=quiet["id"])

    muted = await _finish(api, quiet["id"])
    sent = await _finish(api, loud["id"])
    assert {d["status"] for d in sent} == {"succeeded"}
    await receiver.wait_for(len(sent))
    _assert_muted(muted, receiver)
    assert {r.path for r in receiver.requests} == {"/loud"}


async def test_a_project_mute_silences_that_project_only(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A mute naming a project suppresses its events on every channel; another project's
    events are sent."""
    r = await api.post("/projects", json={"organization_id": 1, "name": "staging"})
    assert r.status_code == 201, r.text
    staging = r.json()["id"]
    channel = await create_webhook(api, f"{receiver.url}/hook")
    await _mute(api, project_id=staging)

    muted = await _finish(api, channel["id"], project_id=staging)
    sent = await _finish(api, channel["id"], project_id=1)
    assert {d["status"] for d in sent} == {"succeeded"}
    await receiver.wait_for(len(sent))
    _assert_muted(muted, receiver)


async def test_mutes_are_listed_paged_and_filtered(api: httpx.AsyncClient) -> None:
    """GET /mutes lists newest first with next_before_id; each filter compares the mute's
    own value; GET /mutes/{id} reads one."""
    run = await new_run(api)
    made = [
        await _mute(api),
        await _mute(api, project_id=1),
        await _mute(api, project_id=1, load_test_id=run["load_test_id"]),
    ]
    r = await api.get("/mutes", params={"limit": 2})
    page = r.json()
    assert [m["id"] for m in page["items"]] == [made[2]["id"], made[1]["id"]]
    assert page["next_before_id"] == made[1]["id"]
    rest = (await api.get("/mutes", params={"limit": 2, "before_id": made[1]["id"]})).json()
    assert [m["id"] for m in rest["items"]] == [made[0]["id"]] and rest["next_before_id"] is None

    by_project = (await api.get("/mutes", params={"project_id": 1})).json()["items"]
    assert [m["id"] for m in by_project] == [made[2]["id"], made[1]["id"]]
    by_test = (await api.get("/mutes", params={"load_test_id": run["load_test_id"]})).json()
    assert [m["id"] for m in by_test["items"]] == [made[2]["id"]]
    one = (await api.get(f"/mutes/{made[0]['id']}")).json()
    assert one == made[0]
    assert one["created_by"] == 1 and one["created_by_name"] and one["reason"] == "release freeze"
    assert one["project_id"] is None and one["channel_id"] is None


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        # the past
        ({"until": "2020-01-01T00:00:00Z"}, "until", "must be in the future"),
        # no zone
        ({"until": "2030-01-01T00:00:00"}, "until", "has no zone"),
        # a number of seconds is not an ISO time
        ({"until": 1893456000}, "until", "ISO 8601"),
        # not a time at all
        ({"until": "tomorrow"}, "until", "ISO 8601"),
        # longer than a mute may last
        ({"until": "2999-01-01T00:00:00+00:00"}, "until", "at most 366 days"),
        # no reason
        ({"reason": "  "}, "reason", "only spaces"),
        # not one line
        ({"reason": "frozen\nuntil Monday"}, "reason", "control character U+000A"),
        # a project that does not exist
        ({"project_id": 999}, "project_id", "has no project 999"),
        # a load test that does not exist
        ({"load_test_id": 999}, "load_test_id", "has no load test 999"),
        # a channel that does not exist
        ({"channel_id": 999}, "channel_id", "has no channel 999"),
    ],
)
async def test_bad_mutes_are_refused_naming_the_field(
    app_server: Server, api: httpx.AsyncClient, change: dict[str, Any], field: str, says: str
) -> None:
    """Each bad value is a 422 naming its field, and nothing is stored."""
    before = await stored_rows(app_server.settings)
    body = {"organization_id": 1, "until": _later(hours=1), "reason": "x", **change}
    error = assert_error(await api.post("/mutes", json=body), 422, field)
    assert says in error["message"]
    assert await stored_rows(app_server.settings) == before


async def test_scopes_must_belong_to_the_organization_and_to_each_other(
    app_server: Server, api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Another organization's project, load test or channel is a 422 naming the field; a
    load test of another project than the one given is too; nothing is stored."""
    r = await api.post("/organizations", json={"name": "other"})
    assert r.status_code == 201, r.text
    org2 = r.json()["id"]
    owner2 = await scoped_token(app_server.settings, org2, Role.OWNER)
    async with app_server.client(owner2) as as_owner2:
        r = await as_owner2.post("/projects", json={"organization_id": org2, "name": "theirs"})
        assert r.status_code == 201, r.text
        theirs = r.json()["id"]
        their_test = (await new_run(as_owner2, project_id=theirs, name="t"))["load_test_id"]
        their_channel = await create_webhook(as_owner2, f"{receiver.url}/x", organization_id=org2)
    r = await api.post("/projects", json={"organization_id": 1, "name": "second"})
    assert r.status_code == 201, r.text
    second = r.json()["id"]
    our_test = (await new_run(api, project_id=1, name="t"))["load_test_id"]

    before = await stored_rows(app_server.settings)
    for scope, field in (
        ({"project_id": theirs}, "project_id"),
        ({"load_test_id": their_test}, "load_test_id"),
        ({"channel_id": their_channel["id"]}, "channel_id"),
        ({"project_id": second, "load_test_id": our_test}, "load_test_id"),
    ):
        body = {"organization_id": 1, "until": _later(days=1), "reason": "x", **scope}
        assert_error(await api.post("/mutes", json=body), 422, field)
    assert await stored_rows(app_server.settings) == before
    made = await _mute(api, project_id=1, load_test_id=our_test)
    assert made["project_id"] == 1 and made["load_test_id"] == our_test


async def test_members_read_mutes_and_only_managers_change_them(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """A member lists and reads mutes but gets a 403 naming the role for POST and DELETE;
    an organization the token cannot see is a 404."""
    mute = await _mute(api)
    member = await scoped_token(app_server.settings, 1, Role.MEMBER)
    async with app_server.client(member) as as_member:
        assert [m["id"] for m in (await as_member.get("/mutes")).json()["items"]] == [mute["id"]]
        body = {"organization_id": 1, "until": _later(hours=1), "reason": "x"}
        error = assert_error(await as_member.post("/mutes", json=body), 403)
        assert "member" in error["message"]
        assert_error(await as_member.delete(f"/mutes/{mute['id']}"), 403)
        assert_error(await as_member.get("/mutes", params={"organization_id": 2}), 404)
    body = {"organization_id": 77, "until": _later(hours=1), "reason": "x"}
    assert_error(await api.post("/mutes", json=body), 404)
    assert (await api.get(f"/mutes/{mute['id']}")).status_code == 200
