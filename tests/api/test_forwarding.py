"""GET /deliveries/{id}/request: a delivery's request rendered again for `loadbell forward`,
re-signed, for owners and admins; other kinds' credentials masked; a 409 when there is no
request to render. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from api.support import all_done, assert_error, new_run, scoped_token, set_status, wait_deliveries
from conftest import Server, free_port
from loadbell.domain.roles import Role
from loadbell.testing import RecordingReceiver
from loadbell.testing.chat import FakeHipChat

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


async def _channel(api: httpx.AsyncClient, kind: str, config: dict[str, Any]) -> int:
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": kind,
            "name": kind,
            "config": config,
            "retry": {"max_attempts": 1},
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _test_delivery(api: httpx.AsyncClient, channel_id: int) -> dict[str, Any]:
    """The channel's test message, once its one attempt is made."""
    r = await api.post(f"/channels/{channel_id}/test")
    assert r.status_code == 200, r.text
    [item] = await wait_deliveries(api, all_done, channel_id=channel_id)
    return item


async def test_signed_request_for_owners_and_admins_only(
    api: httpx.AsyncClient, app_server: Server
) -> None:
    """An admin gets the webhook's request as sent, custom header included, with a valid
    fresh signature and no-store; a member gets a 403 naming the role."""
    async with RecordingReceiver() as real:
        config = {
            "url": f"{real.url}/hook",
            "signing_secrets": [SECRET],
            "headers": {"X-Team": "perf"},
        }
        channel = await _channel(api, "webhook", config)
        run = await new_run(api)
        await set_status(api, run["id"], 2)
        await set_status(api, run["id"], 3, result="passed")
        await real.wait_for(2, timeout=30)
    items = await wait_deliveries(api, all_done, channel_id=channel)
    newest = items[0]  # test.finished
    admin = await scoped_token(app_server.settings, 1, Role.ADMIN)
    async with app_server.client(admin) as as_admin:
        r = await as_admin.get(f"/deliveries/{newest['id']}/request")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    shown = r.json()
    assert shown["event_type"] == "test.finished" and shown["method"] == "POST"
    assert shown["headers"]["X-Team"] == "perf"  # the receiver's own header, as sent
    assert shown["headers"]["X-LoadImpact-ID"] == newest["uuid"]
    assert shown["url"].endswith("/****")  # masked, as in the attempt log
    sent = next(q for q in real.requests if q.header("X-LoadImpact-Event") == "test.finished")
    assert shown["body"].encode() == sent.body
    Webhook(SECRET).verify(shown["body"].encode(), shown["headers"])

    member = await scoped_token(app_server.settings, 1, Role.MEMBER)
    async with app_server.client(member) as as_member:
        r = await as_member.get(f"/deliveries/{newest['id']}/request")
    assert_error(r, 403)
    assert "only owners and admins may forward deliveries" in r.json()["message"]


async def test_chat_credentials_are_masked(api: httpx.AsyncClient) -> None:
    """A HipChat token belongs to HipChat, not to the local receiver: it is masked."""
    async with FakeHipChat() as hipchat:
        channel = await _channel(
            api, "hipchat", {"url": hipchat.room_url(with_token=False), "token": "room-token"}
        )
        item = await _test_delivery(api, channel)
    r = await api.get(f"/deliveries/{item['id']}/request")
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["Authorization"] == "****"
    assert r.json()["kind"] == "hipchat"


async def test_no_request_to_render_is_a_409(api: httpx.AsyncClient) -> None:
    """A kind that does not speak HTTP, and a deleted channel, are 409s that say why; an
    unknown delivery is a 404."""
    mail = await _channel(
        api,
        "email",
        {
            "to": ["ops@example.com"],
            "from": "alerts@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "starttls": False,
        },
    )
    item = await _test_delivery(api, mail)
    r = await api.get(f"/deliveries/{item['id']}/request")
    assert_error(r, 409)
    assert "email channels do not send over HTTP" in r.json()["message"]

    async with RecordingReceiver() as real:
        hook = await _channel(api, "webhook", {"url": f"{real.url}/hook"})
        item = await _test_delivery(api, hook)
    assert (await api.delete(f"/channels/{hook}")).status_code == 204
    r = await api.get(f"/deliveries/{item['id']}/request")
    assert_error(r, 409)
    assert f"channel {hook} was deleted" in r.json()["message"]

    assert_error(await api.get("/deliveries/999999/request"), 404)
