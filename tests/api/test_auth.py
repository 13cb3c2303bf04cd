"""Authentication and scoping: bearer tokens, 404 across organizations, 403 for members."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.support import (
    all_done,
    assert_error,
    create_webhook,
    new_run,
    scoped_token,
    set_status,
    wait_deliveries,
)
from conftest import Server, webhook_channel
from loadbell.api import auth
from loadbell.domain.roles import Role
from loadbell.store import accounts
from loadbell.store.db import create_engine
from loadbell.testing import RecordingReceiver


async def test_missing_or_bad_token_is_401(app_server: Server) -> None:
    """Every API call needs a valid bearer token; the 401 says how to send one."""
    cases: list[dict[str, str]] = [
        {},  # no header at all
        {"Authorization": "Bearer lb_not-a-real-token"},  # unknown token
        {"Authorization": f"Basic {app_server.token}"},  # wrong scheme
        {"Authorization": "Bearer"},  # the scheme alone
        {"Authorization": app_server.token},  # the token without a scheme
    ]
    async with httpx.AsyncClient(base_url=f"{app_server.url}/api/v1") as client:
        for headers in cases:
            for method, path in (("GET", "/channels"), ("POST", "/runs"), ("GET", "/runs/1")):
                r = await client.request(method, path, headers=headers, json={})
                body = assert_error(r, 401)
                assert "Bearer" in body["message"], (headers, path)


async def _first_org_world(api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """A channel, a run and a delivery in organization 1."""
    channel = await create_webhook(api, url)
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    [delivery] = await wait_deliveries(api, all_done, run_id=run["id"])
    return {"channel": channel, "run": run, "delivery": delivery}


async def test_other_organization_sees_404(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """A token of another organization gets 404, never 403, for organization 1's things."""
    world = await _first_org_world(api, f"{receiver.url}/hook")
    r = await api.post("/organizations", json={"name": "Other Org"})
    assert r.status_code == 201, r.text
    other_org = r.json()["id"]
    token = await scoped_token(app_server.settings, other_org, Role.OWNER)
    ch, run, dl = world["channel"]["id"], world["run"]["id"], world["delivery"]["id"]
    cases: list[tuple[str, str, Any]] = [
        ("GET", "/projects/1", None),
        ("PATCH", "/projects/1", {"name": "mine now"}),
        ("DELETE", "/projects/1", None),
        ("GET", f"/load-tests/{world['run']['load_test_id']}", None),
        ("POST", "/runs", {"project_id": 1, "load_test_name": "sneaky"}),
        ("POST", "/runs", {"load_test_id": world["run"]["load_test_id"]}),
        ("GET", f"/runs/{run}", None),
        ("PATCH", f"/runs/{run}", {"status": 3}),
        ("GET", "/runs?project_id=1", None),
        ("GET", f"/events?run_id={run}", None),
        ("GET", f"/channels/{ch}", None),
        ("PATCH", f"/channels/{ch}", {"name": "mine"}),
        ("DELETE", f"/channels/{ch}", None),
        ("POST", f"/channels/{ch}/test", None),
        ("GET", f"/channels/{ch}/effective?project_id=1", None),
        ("PUT", f"/channels/{ch}/overrides/1", {"enabled": False}),
        ("POST", "/channels", webhook_channel(f"{receiver.url}/x")),  # organization_id 1
        ("GET", f"/deliveries/{dl}", None),
        ("POST", f"/deliveries/{dl}/redeliver", None),
    ]
    async with app_server.client(token) as other:
        for method, path, body in cases:
            r = await other.request(method, path, json=body)
            assert_error(r, 404)
        # Lists simply leave organization 1 out.
        for path in ("/channels", "/deliveries", "/runs", "/events", "/projects", "/load-tests"):
            r = await other.get(path)
            assert r.status_code == 200, (path, r.text)
            assert r.json()["items"] == [], path
        orgs = (await other.get("/organizations")).json()["items"]
        assert [o["id"] for o in orgs] == [other_org]
    # Nothing changed in organization 1.
    assert (await api.get(f"/channels/{ch}")).json()["name"] == "hook"
    assert (await api.get(f"/runs/{run}")).json()["status"] == 2
    assert (await api.get("/projects/1")).json()["name"] == "Default Project"
    assert len(receiver.requests) == 1


async def test_member_reads_but_only_owners_and_admins_change_channels(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """A member may read channels; creating, changing, deleting, overriding and test hooks
    are 403s that name the role. An admin may do them all."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    ch = channel["id"]
    token = await scoped_token(app_server.settings, 1, Role.MEMBER)
    async with app_server.client(token) as member:
        r = await member.get("/channels")
        assert r.status_code == 200 and [c["id"] for c in r.json()["items"]] == [ch]
        assert (await member.get(f"/channels/{ch}")).status_code == 200
        assert (await member.get(f"/channels/{ch}/effective?project_id=1")).status_code == 200
        cases: list[tuple[str, str, Any]] = [
            ("POST", "/channels", webhook_channel(f"{receiver.url}/member")),
            ("PATCH", f"/channels/{ch}", {"name": "renamed"}),
            ("PATCH", f"/channels/{ch}", {"enabled": False}),
            ("DELETE", f"/channels/{ch}", None),
            ("PUT", f"/channels/{ch}/overrides/1", {"enabled": False}),
            ("DELETE", f"/channels/{ch}/overrides/1", None),
            ("POST", f"/channels/{ch}/test", None),
        ]
        for method, path, body in cases:
            r = await member.request(method, path, json=body)
            err = assert_error(r, 403)
            assert "member" in err["message"], (method, path)
    after = (await api.get(f"/channels/{ch}")).json()
    assert (after["name"], after["enabled"]) == ("hook", True)
    assert len((await api.get("/channels")).json()["items"]) == 1
    assert (await api.get(f"/channels/{ch}/effective?project_id=1")).json()["override"] is None
    assert receiver.requests == []

    token = await scoped_token(app_server.settings, 1, Role.ADMIN)
    async with app_server.client(token) as admin:
        r = await admin.post("/channels", json=webhook_channel(f"{receiver.url}/admin"))
        assert r.status_code == 201, r.text
        r = await admin.put(f"/channels/{ch}/overrides/1", json={"enabled": True})
        assert r.status_code == 200, r.text
        r = await admin.post(f"/channels/{ch}/test")
        assert r.status_code == 200 and r.json()["outcome"] == "delivered", r.text
    assert [g.path for g in receiver.requests] == ["/hook"]


async def test_the_token_cache_keeps_a_bounded_number_of_tokens(
    app_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After 12 distinct tokens with a bound of 5, the process keeps at most 5 principals,
    and every token still authenticates."""
    monkeypatch.setattr(auth, "PRINCIPALS_MAX", 5)
    engine = create_engine(app_server.settings)
    try:
        async with engine.begin() as conn:
            tokens = [await accounts.issue_token(conn, 1, f"t{i}", None) for i in range(12)]
    finally:
        await engine.dispose()
    state = app_server.app.state.loadbell  # type: ignore[attr-defined]
    for token in tokens:
        async with app_server.client(token) as api:
            r = await api.get("/projects")
        assert r.status_code == 200, r.text
        assert len(state.principals) <= 5
