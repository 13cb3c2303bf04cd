"""Per-project overrides of an organization channel (seed 003 rules) through the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import sqlalchemy as sa

from api.support import (
    assert_error,
    create_webhook,
    list_deliveries,
    new_run,
    set_status,
    unusable_urls,
)
from conftest import Server
from loadbell.security.secretbox import SecretBox
from loadbell.store.db import create_engine
from loadbell.store.tables import channel_overrides
from loadbell.testing import RecordingReceiver


async def _project(api: httpx.AsyncClient, name: str) -> int:
    r = await api.post("/projects", json={"organization_id": 1, "name": name})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _start(api: httpx.AsyncClient, project_id: int) -> int:
    run = await new_run(api, project_id=project_id)
    await set_status(api, run["id"], 2)
    return int(run["id"])


async def _effective(api: httpx.AsyncClient, channel_id: int, project_id: int) -> dict[str, Any]:
    r = await api.get(f"/channels/{channel_id}/effective", params={"project_id": project_id})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_project_switch_always_wins(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """An org channel reaches every project until one project switches it off (the others
    keep getting notifications); a project that switches it on wins over a disabled org."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    second = await _project(api, "Second")

    inherited = await _start(api, second)
    assert len(await list_deliveries(api, run_id=inherited)) == 1

    r = await api.put(f"/channels/{channel['id']}/overrides/{second}", json={"enabled": False})
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False and r.json()["sources"]["enabled"] == "project"

    silenced = await _start(api, second)
    assert await list_deliveries(api, run_id=silenced) == []
    still = await _start(api, 1)
    assert len(await list_deliveries(api, run_id=still)) == 1

    await receiver.wait_for(2)
    await asyncio.sleep(0.2)
    assert sorted(g.json()["load_test_run_id"] for g in receiver.requests) == [inherited, still]

    # The other way round: with the organization off, a project that switches it on wins.
    r = await api.patch(f"/channels/{channel['id']}", json={"enabled": False})
    assert r.status_code == 200, r.text
    r = await api.put(f"/channels/{channel['id']}/overrides/{second}", json={"enabled": True})
    assert r.status_code == 200, r.text
    on = await _start(api, second)
    off = await _start(api, 1)
    assert await list_deliveries(api, run_id=off) == []
    await receiver.wait_for(3)
    assert receiver.requests[-1].json()["load_test_run_id"] == on


async def _override_rows(server: Server) -> list[Any]:
    engine = create_engine(server.settings)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(sa.select(channel_overrides)))
    finally:
        await engine.dispose()


async def test_url_override_and_clearing(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """A project URL sends that project's deliveries elsewhere; clearing it ("") falls back,
    and the effective view names each value's source."""
    channel = await create_webhook(
        api,
        f"{receiver.url}/org",
        config={"url": f"{receiver.url}/org", "format": "loadimpact"},
    )
    cid = channel["id"]
    second = await _project(api, "Second")

    eff = await _effective(api, cid, second)
    assert eff["sources"] == {
        "auto_disable": "default",
        "notify_on": "default",  # noise control's keys (domain/noise.py)
        "quiet_hours": "default",
        "throttle": "default",
        "enabled": "organization",
        "format": "organization",
        "headers": "default",
        "url": "organization",
    }
    assert eff["override"] is None

    async with RecordingReceiver() as other:
        r = await api.put(
            f"/channels/{cid}/overrides/{second}",
            json={"config": {"url": f"{other.url}/project/T0KEN", "headers": {"X-P": "v"}}},
        )
        assert r.status_code == 200, r.text
        assert "T0KEN" not in r.text
        [row] = await _override_rows(app_server)  # the project's URL is encrypted at rest too
        assert "T0KEN" not in repr(tuple(row)) and "url" not in row.config
        assert SecretBox("test-secret-key").open(row.secrets)["url"].endswith("/T0KEN")
        eff = await _effective(api, cid, second)
        assert eff["enabled"] is True
        assert eff["config"]["url"] == f"{other.url}/****"
        assert eff["config"]["headers"] == {"X-P": "****"}
        assert eff["sources"] == {
            "auto_disable": "default",
            "notify_on": "default",  # noise control's keys (domain/noise.py)
            "quiet_hours": "default",
            "throttle": "default",
            "enabled": "organization",
            "format": "organization",
            "headers": "project",
            "url": "project",
        }

        moved = await _start(api, second)
        home = await _start(api, 1)
        [to_other] = await other.wait_for(1)
        [to_org] = await receiver.wait_for(1)
        assert (to_other.path, to_other.json()["load_test_run_id"]) == ("/project/T0KEN", moved)
        assert to_other.header("X-P") == "v"
        assert (to_org.path, to_org.json()["load_test_run_id"]) == ("/org", home)

        # Clearing the URL: the organization's comes back; "empty" never overrides.
        r = await api.put(
            f"/channels/{cid}/overrides/{second}",
            json={"config": {"url": "", "headers": {}}},
        )
        assert r.status_code == 200, r.text
        eff = await _effective(api, cid, second)
        assert eff["sources"]["url"] == "organization"
        assert eff["sources"]["headers"] == "default"
        back = await _start(api, second)
        await receiver.wait_for(2)
        await asyncio.sleep(0.2)
        assert len(other.requests) == 1
    assert receiver.requests[-1].json()["load_test_run_id"] == back
    assert receiver.requests[-1].path == "/org"


async def test_override_keeps_masked_secret_and_delete_falls_back(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Re-sending a masked override URL keeps it; DELETE removes the override entirely."""
    channel = await create_webhook(api, f"{receiver.url}/org")
    cid = channel["id"]
    path = f"/channels/{cid}/overrides/1"
    r = await api.put(path, json={"config": {"url": f"{receiver.url}/project/T0KEN"}})
    assert r.status_code == 200, r.text
    masked = r.json()["override"]["config"]["url"]
    r = await api.put(path, json={"enabled": True, "config": {"url": masked}})
    assert r.status_code == 200, r.text
    await _start(api, 1)
    [got] = await receiver.wait_for(1)
    assert got.path == "/project/T0KEN"

    assert (await api.delete(path)).status_code == 204
    eff = await _effective(api, cid, 1)
    assert eff["override"] is None
    assert eff["sources"]["url"] == eff["sources"]["enabled"] == "organization"


async def test_bad_overrides(api: httpx.AsyncClient, receiver: RecordingReceiver) -> None:
    """Overrides of project channels, of unknown projects and with bad values are refused."""
    org_channel = await create_webhook(api, f"{receiver.url}/org")
    project_channel = await create_webhook(api, f"{receiver.url}/p", project_id=1)
    err = assert_error(
        await api.put(f"/channels/{project_channel['id']}/overrides/1", json={"enabled": False}),
        422,
        "channel_id",
    )
    assert "PATCH" in err["message"]
    assert_error(
        await api.put(f"/channels/{org_channel['id']}/overrides/999", json={"enabled": False}),
        404,
    )
    assert_error(
        await api.put(
            f"/channels/{org_channel['id']}/overrides/1",
            json={"config": {"url": "not a url"}},
        ),
        422,
        "config.url",
    )
    assert_error(
        await api.put(
            f"/channels/{org_channel['id']}/overrides/1", json={"config": {"colour": "red"}}
        ),
        422,
        "config.colour",
    )
    eff = await _effective(api, org_channel["id"], 1)
    assert eff["override"] is None


async def test_override_urls_whose_host_is_no_address_or_name_are_refused(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """A project URL whose host the sender cannot use is a 422 on config.url that says what
    to write, and the project's stored override stays as it was."""
    channel = await create_webhook(api, f"{receiver.url}/org")
    path = f"/channels/{channel['id']}/overrides/1"
    r = await api.put(path, json={"config": {"url": f"{receiver.url}/project"}})
    assert r.status_code == 200, r.text
    for url, says in unusable_urls(receiver.port):
        err = assert_error(await api.put(path, json={"config": {"url": url}}), 422, "config.url")
        assert says in err["message"] and "write" in err["message"], err
    [row] = await _override_rows(app_server)
    assert SecretBox("test-secret-key").open(row.secrets)["url"] == f"{receiver.url}/project"
