"""Channel health and auto-disable end to end: a real server and worker, real receivers
(one that always answers 500), real SMTP (aiosmtpd), both databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from api.slack_support import CALLBACK, create_slack_app, install
from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from channels.test_email import MailRecorder, SmtpServer, _serve
from conftest import Server
from loadbell.domain.roles import Role
from loadbell.settings import Settings
from loadbell.store import accounts
from loadbell.store.db import create_engine
from loadbell.store.tables import users
from loadbell.testing import RecordingReceiver
from loadbell.testing.fake_slack import FakeSlackApi

ONCE = {"max_attempts": 1}  # each delivery ends after one attempt: one failure per event
AT_ONCE = {"after_failures": 2, "after_hours": 0}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from _serve(MailRecorder())


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(redirect_urls=[CALLBACK]) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, smtp: SmtpServer, slack: FakeSlackApi) -> Settings:
    return settings.model_copy(
        update={
            **slack.settings(),
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_from": "loadbell <loadbell@example.com>",
            "smtp_starttls": False,
        }
    )


async def _wait(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true; fail saying ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def _channel(api: httpx.AsyncClient, channel_id: int) -> dict[str, Any]:
    r = await api.get(f"/channels/{channel_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _event(api: httpx.AsyncClient, channel_id: int) -> list[dict[str, Any]]:
    """Start a run (one test.started to every subscribed channel) and wait until the
    channel's delivery of it has ended; returns the channel's deliveries of that run."""
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    return await wait_deliveries(api, all_done, run_id=run["id"], channel_id=channel_id)


async def test_failures_count_and_a_success_resets_them(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Each delivery that failed for good adds one to consecutive_failures (state
    failing); a success resets the count (state healthy) and the 24 h success rate counts
    both."""
    receiver.status = 500
    channel = await create_webhook(api, f"{receiver.url}/hook", retry=ONCE)
    health = channel["health"]
    assert health["state"] == "healthy" and health["consecutive_failures"] == 0
    assert health["success_rate_24h"] is None and health["last_failure_at"] is None
    assert channel["config"]["auto_disable"] == {"after_failures": 20, "after_hours": 24}

    for n in (1, 2):
        [d] = await _event(api, channel["id"])
        assert d["status"] == "failed"
        health = (await _channel(api, channel["id"]))["health"]
        assert health["state"] == "failing"
        assert health["consecutive_failures"] == n
    assert health["last_success_at"] is None and health["last_failure_at"] is not None
    assert health["success_rate_24h"] == 0.0

    receiver.status = 200
    [d] = await _event(api, channel["id"])
    assert d["status"] == "succeeded"
    shown = await _channel(api, channel["id"])
    health = shown["health"]
    assert health["state"] == "healthy" and health["consecutive_failures"] == 0
    assert health["last_success_at"] is not None
    assert health["success_rate_24h"] == pytest.approx(1 / 3, abs=0.001)
    assert shown["enabled"] is True and health["disabled_at"] is None
    listed = (await api.get("/channels")).json()["items"]
    assert [c["health"] for c in listed if c["id"] == channel["id"]] == [health]


async def _add_managers(settings: Settings) -> None:
    """The owner of the first run gets an address; an admin and a member join, so that
    only owners and admins get the mail."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(users).where(users.c.id == 1).values(email="own@x.test"))
            admin = await accounts.create_user(conn, "admin", "admin@x.test")
            await accounts.add_member(conn, 1, admin, Role.ADMIN)
            member = await accounts.create_user(conn, "member", "member@x.test")
            await accounts.add_member(conn, 1, member, Role.MEMBER)
    finally:
        await engine.dispose()


async def test_auto_disable_skips_pending_and_later_deliveries_and_tells_everyone(
    api: httpx.AsyncClient,
    settings: Settings,
    smtp: SmtpServer,
    receiver: RecordingReceiver,
) -> None:
    """With after_failures 2 and after_hours 0, the second failure disables the channel:
    its pending delivery ends skipped with the reason, later events are recorded skipped
    and never sent, another channel (Loadmance) receives channel.disabled, the owner and
    the admin get a mail; PATCH enabled=true re-enables it with its health reset."""
    await _add_managers(settings)
    async with RecordingReceiver() as watcher:
        receiver.status = 500
        failing = await create_webhook(
            api,
            f"{receiver.url}/dead",
            name="dead hook",
            retry=ONCE,
            config={"url": f"{receiver.url}/dead", "auto_disable": AT_ONCE},
        )
        ops = await create_webhook(
            api,
            f"{watcher.url}/ops",
            name="ops",
            config={"url": f"{watcher.url}/ops", "format": "loadmance"},
        )
        assert "channel.disabled" in ops["events"]
        assert "channel.disabled" not in failing["events"]  # loadimpact cannot express it

        [first] = await _event(api, failing["id"])
        assert first["status"] == "failed"
        assert (await _channel(api, failing["id"]))["enabled"] is True

        # The second failure, with a delivery of the same run waiting behind it (same
        # order key): the receiver holds the first one until the second is stored.
        receiver.delay = 1.0
        run = await new_run(api)
        await set_status(api, run["id"], 2)
        await set_status(api, run["id"], 3, result="passed")
        items = await wait_deliveries(
            api, all_done, timeout=30, run_id=run["id"], channel_id=failing["id"]
        )
        assert [d["status"] for d in items] == ["failed", "skipped"]
        assert items[0]["reason"] is None
        assert items[1]["reason"] == "channel_disabled" and items[1]["attempts"] == []

        shown = await _channel(api, failing["id"])
        health = shown["health"]
        assert shown["enabled"] is False
        assert health["state"] == "disabled" and health["consecutive_failures"] == 2
        assert health["disabled_at"] is not None
        assert "disabled after 2 consecutive failed deliveries" in health["disabled_reason"]

        # channel.disabled reached the other channel, in its Loadmance form.
        def announced() -> list[dict[str, Any]]:
            bodies = [orjson.loads(r.body) for r in watcher.requests]
            return [b for b in bodies if b["eventType"] == "CHANNEL_DISABLED"]

        [note] = await _wait(lambda: asyncio.sleep(0, announced()), "channel.disabled sent")
        assert note["severity"] == "error"
        assert note["metadata"]["channelId"] == str(failing["id"])
        assert note["metadata"]["channelName"] == "dead hook"
        assert "disabled after 2 consecutive failed deliveries" in note["message"]

        # The owner and the admin got a mail; the member did not.
        [mail] = await _wait(
            lambda: asyncio.sleep(0, smtp.recorder.messages), "mail to owners and admins"
        )
        assert smtp.recorder.envelopes == [["admin@x.test", "own@x.test"]]
        assert mail["Subject"].startswith("Channel disabled: dead hook (webhook)")
        assert mail["X-Loadbell-Event"] == "channel.disabled"

        # A later event is recorded skipped for the disabled channel, and never sent.
        sent = len(receiver.requests)
        [later] = await _event(api, failing["id"])
        assert later["status"] == "skipped" and later["reason"] == "channel_disabled"
        r = await api.get("/deliveries", params={"status": "skipped", "channel_id": failing["id"]})
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        assert len(receiver.requests) == sent

        # Enabling it again resets its health, and it sends again.
        receiver.delay, receiver.status = 0.0, 200
        r = await api.patch(f"/channels/{failing['id']}", json={"enabled": True})
        assert r.status_code == 200, r.text
        health = r.json()["health"]
        assert r.json()["enabled"] is True
        assert health["state"] == "healthy" and health["consecutive_failures"] == 0
        assert health["disabled_at"] is None and health["disabled_reason"] is None
        [d] = await _event(api, failing["id"])
        assert d["status"] == "succeeded"
        assert len(receiver.requests) == sent + 1

        # A skipped delivery can still be sent, by hand: it loses its reason.
        r = await api.post(f"/deliveries/{later['id']}/redeliver")
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "pending" and r.json()["reason"] is None
        redone = await _wait(
            lambda: _ended(api, later["id"]), "the redelivered skipped delivery ended"
        )
        assert redone["status"] == "succeeded" and redone["reason"] is None
        assert len(receiver.requests) == sent + 2


async def _ended(api: httpx.AsyncClient, delivery_id: int) -> dict[str, Any] | None:
    r = await api.get(f"/deliveries/{delivery_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()) if r.json()["status"] != "pending" else None


async def test_auto_disable_null_never_disables(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """With auto_disable null the channel keeps sending however often it fails; the
    setting reads back as null."""
    receiver.status = 500
    channel = await create_webhook(
        api,
        f"{receiver.url}/hook",
        retry=ONCE,
        config={"url": f"{receiver.url}/hook", "auto_disable": None},
    )
    assert channel["config"]["auto_disable"] is None
    r = await api.patch(
        f"/channels/{channel['id']}", json={"config": {"auto_disable": {"after_failures": 0}}}
    )
    assert r.status_code == 422 and r.json()["field"] == "config.auto_disable.after_failures"
    for _ in range(3):
        [d] = await _event(api, channel["id"])
        assert d["status"] == "failed"
    shown = await _channel(api, channel["id"])
    assert shown["enabled"] is True
    assert shown["health"]["state"] == "failing"
    assert shown["health"]["consecutive_failures"] == 3
    assert len(receiver.requests) == 3


async def test_auto_disable_is_inherited_by_value_from_a_project_override(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A project override sets its own thresholds (the effective view says where the
    value came from), and the project's failing deliveries disable the channel by them."""
    receiver.status = 500
    channel = await create_webhook(api, f"{receiver.url}/hook", retry=ONCE)
    effective = f"/channels/{channel['id']}/effective"
    # false turns it off for the project (null there would mean "inherit").
    r = await api.put(
        f"/channels/{channel['id']}/overrides/1", json={"config": {"auto_disable": False}}
    )
    assert r.status_code == 200, r.text
    r = await api.get(effective, params={"project_id": 1})
    assert r.json()["config"]["auto_disable"] is None
    assert r.json()["sources"]["auto_disable"] == "project"
    r = await api.put(
        f"/channels/{channel['id']}/overrides/1",
        json={"config": {"auto_disable": {"after_failures": 1, "after_hours": 0}}},
    )
    assert r.status_code == 200, r.text
    r = await api.get(f"/channels/{channel['id']}/effective", params={"project_id": 1})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["auto_disable"] == {"after_failures": 1, "after_hours": 0}
    assert r.json()["sources"]["auto_disable"] == "project"
    [d] = await _event(api, channel["id"])
    assert d["status"] == "failed"
    shown = await _wait(
        lambda: _disabled(api, channel["id"]), "the project's threshold disabled the channel"
    )
    assert shown["health"]["consecutive_failures"] == 1


async def _disabled(api: httpx.AsyncClient, channel_id: int) -> dict[str, Any] | None:
    shown = await _channel(api, channel_id)
    return shown if shown["health"]["state"] == "disabled" else None


async def test_slack_targets_have_health_of_their_own(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi, settings: Settings
) -> None:
    """A Slack app channel with two targets keeps health per target: the archived one
    fails, the other one succeeds."""
    slack.add_channel("alerts")
    dev = slack.add_channel("dev")
    channel = await create_slack_app(api, "#alerts #dev", retry=ONCE)
    await install(api, app_server.url, slack, channel["id"])
    dev.is_archived = True
    items = await _event(api, channel["id"])
    assert sorted(d["status"] for d in items) == ["failed", "succeeded"]
    # Every delivery of the channel (the run's load test was created too: one more event)
    everything = await wait_deliveries(api, all_done, channel_id=channel["id"])
    failed = {d["target"] for d in everything if d["status"] == "failed"}
    assert len(failed) == 1, everything
    health = (await _channel(api, channel["id"]))["health"]
    by_target = {t["target"]: t for t in health["targets"]}
    assert set(by_target) == {d["target"] for d in everything}, health
    [bad] = failed
    assert by_target[bad]["state"] == "failing"
    assert by_target[bad]["consecutive_failures"] == len(everything) // 2
    [ok] = [t for target, t in by_target.items() if target != bad]
    assert ok["state"] == "healthy" and ok["consecutive_failures"] == 0
    assert ok["last_success_at"] is not None and ok["last_failure_at"] is None
