"""Real deliveries match the published schemas: a real server and worker send every event
of every format to a real receiver on 127.0.0.1 (and the chat kinds to their fakes), and
every body received is validated with jsonschema. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from api.slack_support import CALLBACK, create_slack_app, install
from api.support import all_done, new_run, set_status
from conftest import Server
from loadbell.channels.registry import get_kind
from loadbell.domain.events import SUBSCRIBABLE, EventType
from loadbell.settings import Settings
from loadbell.testing import RecordingReceiver
from loadbell.testing.chat import (
    FakeDiscord,
    FakeHipChat,
    FakeMattermost,
    FakeSlackWebhook,
    FakeTeams,
)
from loadbell.testing.fake_slack import FakeSlackApi
from schema_support import problems

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes
FAST = {"p95_ms": 254.0, "avg_ms": 120.0, "error_rate": 0.01, "apdex": 0.95, "rps": 100.0}
SLOW = {"p95_ms": 312.0, "avg_ms": 132.0, "error_rate": 0.015, "apdex": 0.93, "rps": 90.0}
THRESHOLDS = [{"metric": "http_req_duration", "expression": "p(95)<500", "ok": True}]
WEBHOOK_FORMATS = ("loadimpact", "loadimpact-legacy", "loadmance")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(redirect_urls=[CALLBACK]) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, slack: FakeSlackApi) -> Settings:
    return settings.model_copy(update=slack.settings())


def _events(kind: str, config: dict[str, Any]) -> list[str]:
    can = get_kind(kind).events(config)
    return [e.value for e in SUBSCRIBABLE if e in can]


async def _channel(api: httpx.AsyncClient, kind: str, config: dict[str, Any]) -> int:
    body = {
        "organization_id": 1,
        "kind": kind,
        "name": f"{kind} {config.get('format', '')}".strip(),
        "config": config,
        "events": _events(kind, config),
        "retry": {"max_attempts": 1},
    }
    r = await api.post("/channels", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _ok(response: Any, *codes: int) -> Any:
    r = await response
    assert r.status_code in (codes or (200, 201, 202, 204)), r.text
    return r.json() if r.content else None


async def _every_event(api: httpx.AsyncClient) -> None:
    """Run through every subscribable event once or more: projects, load tests, runs that
    pass, fail and regress, reports, a crossed threshold."""
    project = await _ok(api.post("/projects", json={"organization_id": 1, "name": "shop"}))
    await _ok(api.patch(f"/projects/{project['id']}", json={"name": "web shop"}))
    first = await new_run(api, project_id=project["id"], name="checkout")
    await set_status(api, first["id"], 1)  # test.starting
    await set_status(api, first["id"], 2)  # test.started
    await _ok(api.post(f"/runs/{first['id']}/reports", json={"metrics": FAST}))
    await _ok(
        api.post(
            f"/runs/{first['id']}/threshold-failures",
            json={"metric": "http_req_duration", "expression": "p(95)<200", "value": 254.0},
        )
    )
    passed = {**FAST, "thresholds": THRESHOLDS}
    await set_status(api, first["id"], 3, result="passed", metrics=passed)
    await _ok(api.post(f"/runs/{first['id']}/report-available"))
    slow = await new_run(api, project_id=project["id"], name="checkout")
    await set_status(api, slow["id"], 2)
    await set_status(api, slow["id"], 3, result="passed", metrics=SLOW)  # + test.regressed
    aborted = await new_run(api, project_id=project["id"], name="checkout")
    await set_status(api, aborted["id"], 2)
    await set_status(api, aborted["id"], 5)  # aborted by user: a failed end
    await _ok(api.patch(f"/load-tests/{first['load_test_id']}", json={"name": "checkout v2"}))
    await _ok(api.delete(f"/load-tests/{first['load_test_id']}"))
    await _ok(api.delete(f"/projects/{project['id']}"))


async def _disable_a_channel(api: httpx.AsyncClient, dead_url: str) -> None:
    """A webhook that fails once with auto_disable at 1 failure: channel.disabled goes out."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": "dead",
            "config": {"url": dead_url, "auto_disable": {"after_failures": 1, "after_hours": 0}},
            "retry": {"max_attempts": 1},
        },
    )
    assert r.status_code == 201, r.text
    await _ok(api.post(f"/channels/{r.json()['id']}/test"))


async def test_every_body_sent_matches_its_schema(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """Every format x event, and every chat kind, as really delivered, validates."""
    slack.add_channel("load-tests")
    async with (
        RecordingReceiver() as rx,
        RecordingReceiver(status=500) as dead,
        FakeSlackWebhook() as slack_hook,
        FakeTeams() as teams,
        FakeDiscord() as discord,
        FakeMattermost() as mattermost,
        FakeHipChat() as hipchat,
    ):
        webhooks = {
            fmt: await _channel(
                api,
                "webhook",
                # Signed, so every request carries its delivery id (webhook-id), which the
                # loadmance format has no header of its own for.
                {"url": f"{rx.url}/{fmt}", "format": fmt, "signing_secrets": [SECRET]},
            )
            for fmt in WEBHOOK_FORMATS
        }
        chats = {
            "slack": await _channel(api, "slack", {"webhook_url": slack_hook.webhook_url()}),
            "teams": await _channel(api, "teams", {"url": teams.webhook_url()}),
            "discord": await _channel(api, "discord", {"url": discord.webhook_url()}),
            "mattermost": await _channel(api, "mattermost", {"url": mattermost.webhook_url()}),
            "hipchat": await _channel(api, "hipchat", {"url": hipchat.room_url()}),
        }
        app = await create_slack_app(api, "#load-tests", events=_events("slack_app", {}))
        await install(api, app_server.url, slack, app["id"])
        chats["slack_app"] = app["id"]

        await _every_event(api)
        for channel_id in [*webhooks.values(), *chats.values()]:
            await _ok(api.post(f"/channels/{channel_id}/test"))
        await _disable_a_channel(api, f"{dead.url}/dead")

        # Everything delivered: each channel got every event it can express, and each of
        # its deliveries ended (channel.disabled comes after the dead channel's failure).
        channels = {**{f"webhook {f}": c for f, c in webhooks.items()}, **chats}
        for name, channel_id in channels.items():
            config = {"url": "http://x.test/", "format": name.removeprefix("webhook ")}
            kind = "webhook" if name.startswith("webhook") else name
            wanted = {
                *_events(kind, config if kind == "webhook" else {}),
                "test.notification_channel",
            }
            await _delivered(api, channel_id, wanted)
        deliveries = await _all_deliveries(api)

    by_uuid = {d["uuid"]: d for d in deliveries}
    checked: set[tuple[str, str]] = set()
    for request in rx.requests:
        fmt = request.path.strip("/")
        delivery = by_uuid[request.header("webhook-id") or ""]
        event = delivery["event_type"]
        assert problems(fmt, event, request.json()) == [], (fmt, event, request.body)
        checked.add((fmt, event))
    for fmt in WEBHOOK_FORMATS:
        can = set(_events("webhook", {"url": "http://x.test/", "format": fmt}))
        assert {e for f, e in checked if f == fmt} == can | {"test.notification_channel"}

    fakes: dict[str, list[Any]] = {
        "slack": slack_hook.accepted,
        "teams": teams.accepted,
        "discord": discord.accepted,
        "mattermost": mattermost.accepted,
        "hipchat": hipchat.accepted,
        "slack_app": [m.body for m in slack.messages],
    }
    every = {e.value for e in EventType}
    for kind, bodies in fakes.items():
        sent = [d for d in deliveries if d["channel_id"] == chats[kind]]
        assert {d["event_type"] for d in sent} == every, kind  # every event reached it
        assert len(bodies) == len(sent), kind
        for body in bodies:
            # A chat kind's message has one shape for every event.
            assert problems(kind, "test.finished", body) == [], (kind, orjson.dumps(body))


async def _delivered(api: httpx.AsyncClient, channel_id: int, wanted: set[str]) -> None:
    """Wait until the channel has a delivery of each of ``wanted`` and all of them ended."""
    deadline = time.monotonic() + 60
    while True:
        page = await _ok(api.get("/deliveries", params={"channel_id": channel_id, "limit": 500}))
        items = page["items"]
        types = {d["event_type"] for d in items}
        if types >= wanted and all_done(items):
            assert {d["status"] for d in items} == {"succeeded"}, items
            return
        assert time.monotonic() < deadline, f"channel {channel_id}: {sorted(types)} of {wanted}"
        await asyncio.sleep(0.1)


async def _all_deliveries(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if before is not None:
            params["before_id"] = before
        page = await _ok(api.get("/deliveries", params=params))
        out += page["items"]
        before = page["next_before_id"]
        if before is None:
            return out
