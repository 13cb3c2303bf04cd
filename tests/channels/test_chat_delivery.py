"""Chat channels end to end: the real server and worker deliver to local fakes that reply
as Slack, Discord, Teams, HipChat and Mattermost do, and the delivery log shows it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from loadbell.testing.chat import (
    FakeDiscord,
    FakeHipChat,
    FakeMattermost,
    FakeSlackWebhook,
    FakeTeams,
    Reply,
)

FAST_RETRY = {"base_delay": 0.2, "max_delay": 2.0}  # seconds: keep retried tests short


async def create(
    api: httpx.AsyncClient,
    kind: str,
    config: dict[str, Any],
    events: list[str] | None = None,
    **extra: Any,
) -> int:
    body: dict[str, Any] = {
        "organization_id": 1,
        "kind": kind,
        "name": f"{kind} channel",
        "config": config,
        "events": events,
        "retry": FAST_RETRY,
        **extra,
    }
    r = await api.post("/channels", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def send_test(api: httpx.AsyncClient, channel_id: int) -> dict[str, Any]:
    r = await api.post(f"/channels/{channel_id}/test")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def settled(
    api: httpx.AsyncClient, channel_id: int, count: int = 1, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """The channel's deliveries, oldest first, once ``count`` exist and none is pending."""
    deadline = time.monotonic() + timeout
    while True:
        r = await api.get("/deliveries", params={"channel_id": channel_id})
        items = sorted(r.json()["items"], key=lambda d: d["id"])
        if len(items) >= count and all(d["status"] != "pending" for d in items):
            return items
        assert time.monotonic() < deadline, f"deliveries still pending: {items}"
        await asyncio.sleep(0.05)


async def run_to_end(api: httpx.AsyncClient, **finish: Any) -> int:
    r = await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})
    assert r.status_code == 201, r.text
    run_id = int(r.json()["id"])
    assert (await api.patch(f"/runs/{run_id}", json={"status": 2})).status_code == 200
    r = await api.patch(f"/runs/{run_id}", json={"status": 3, **finish})
    assert r.status_code == 200, r.text
    return run_id


# -- Slack -------------------------------------------------------------------------------


async def test_slack_run_lifecycle(api: httpx.AsyncClient) -> None:
    """A run that starts and fails its thresholds posts two Block Kit messages Slack takes."""
    async with FakeSlackWebhook() as slack:
        cid = await create(
            api, "slack", {"webhook_url": slack.webhook_url()}, ["test.started", "test.finished"]
        )
        metrics = {
            "requests": 1500,
            "avg_ms": 245.7,
            "p95_ms": 612.3,
            "error_rate": 0.06,
            "apdex": 0.71,
            "thresholds": [{"metric": "http_req_duration", "expression": "p(95)<500", "ok": False}],
        }
        run_id = await run_to_end(api, result="failed", metrics=metrics)
        deliveries = await settled(api, cid, 2)
    assert [d["status"] for d in deliveries] == ["succeeded", "succeeded"]
    assert deliveries[1]["attempts"][0]["response_body"] == "ok"
    assert deliveries[1]["attempts"][0]["request_url"].endswith("/****")  # token masked
    started, finished = slack.accepted
    assert started["blocks"][0]["text"]["text"] == "🚀 Load test running: checkout"
    assert finished["blocks"][0]["text"]["text"] == "❌ Load test failed: checkout"
    button = next(b for b in finished["blocks"] if b["type"] == "actions")["elements"][0]
    assert button["url"] == f"http://loadbell.test/runs/{run_id}"
    assert "p(95)&lt;500" in str(finished["blocks"])


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(400, "invalid_payload"), "invalid_payload"),  # malformed JSON or blocks
        (Reply(403, "action_prohibited"), "action_prohibited"),  # an admin restriction
        (Reply(410, "channel_is_archived"), "channel_is_archived"),  # gone: never retried
    ],
)
async def test_slack_error_bodies_land_in_the_log(
    api: httpx.AsyncClient, reply: Reply, code: str
) -> None:
    """Slack's plain-text error codes are logged with a hint, and the delivery fails once."""
    async with FakeSlackWebhook() as slack:
        cid = await create(api, "slack", {"webhook_url": slack.webhook_url()})
        slack.then(reply)
        result = await send_test(api, cid)
        [delivery] = await settled(api, cid)
    assert result["ok"] is False and result["outcome"] == "failed"
    assert code in result["error"] and result["response_body"] == code
    assert delivery["status"] == "failed" and delivery["attempt_count"] == 1


async def test_slack_unknown_webhook_is_not_retried(api: httpx.AsyncClient) -> None:
    """A removed webhook (404 ``no_service``) fails at once."""
    async with FakeSlackWebhook() as slack:
        cid = await create(api, "slack", {"webhook_url": f"{slack.base_url}/services/T/B/gone"})
        result = await send_test(api, cid)
        [delivery] = await settled(api, cid)
    assert result["response_status"] == 404
    assert "no_service: the webhook is disabled or was removed" in result["error"]
    assert delivery["attempt_count"] == 1 and delivery["status"] == "failed"


async def test_slack_429_waits_for_retry_after(api: httpx.AsyncClient) -> None:
    """A 429 is retried after its Retry-After, not after the shorter backoff."""
    async with FakeSlackWebhook() as slack:
        cid = await create(api, "slack", {"webhook_url": slack.webhook_url()})
        slack.then(FakeSlackWebhook.rate_limited(1))
        result = await send_test(api, cid)
        [delivery] = await settled(api, cid)
    assert result["outcome"] == "retry" and "retrying after 1 s" in result["error"]
    assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 2
    first, second = slack.requests
    assert second.at - first.at >= 0.9  # Retry-After: 1, while the backoff would be 0.2 s


# -- Discord -----------------------------------------------------------------------------


async def test_discord_delivers_with_204(api: httpx.AsyncClient) -> None:
    """A test message goes out as an embed and Discord's 204 counts as delivered."""
    async with FakeDiscord() as discord:
        cid = await create(api, "discord", {"url": discord.webhook_url()})
        result = await send_test(api, cid)
    assert result["ok"] is True and result["response_status"] == 204
    [payload] = discord.accepted
    assert payload["embeds"][0]["title"] == "🔔 Test notification from loadbell"
    assert payload["allowed_mentions"] == {"parse": []}


async def test_discord_429_uses_the_body_retry_after(api: httpx.AsyncClient) -> None:
    """Discord's exact ``retry_after`` (0.3 s) is used rather than the rounded header (1 s)."""
    async with FakeDiscord() as discord:
        cid = await create(api, "discord", {"url": discord.webhook_url()})
        discord.then(FakeDiscord.rate_limited(0.3))
        result = await send_test(api, cid)
        [delivery] = await settled(api, cid)
    assert result["outcome"] == "retry" and "retrying after 0.3 s" in result["error"]
    assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 2
    first, second = discord.requests
    assert second.at - first.at >= 0.25  # the wait came from the body, as logged above


async def test_discord_429_holds_the_whole_webhook(api: httpx.AsyncClient) -> None:
    """After a 429 with retry_after, the next message to the same webhook waits for it too,
    instead of running into another 429 (its pacing alone would let it through at once)."""
    async with FakeDiscord() as discord:
        cid = await create(api, "discord", {"url": discord.webhook_url()})
        discord.then(FakeDiscord.rate_limited(1.0))
        first = await send_test(api, cid)
        second = await send_test(api, cid)
        await settled(api, cid)
    assert first["outcome"] == "retry"
    assert second["ok"] is True
    assert len(discord.requests) == 3  # the 429, then both messages once the hold ended
    assert all(r.at - discord.requests[0].at >= 0.9 for r in discord.requests[1:])


async def test_discord_deleted_webhook_is_never_retried(api: httpx.AsyncClient) -> None:
    """A 404 Unknown Webhook fails at once: Discord punishes senders that keep trying."""
    async with FakeDiscord() as discord:
        cid = await create(api, "discord", {"url": f"{discord.base_url}/api/webhooks/1/gone"})
        result = await send_test(api, cid)
        [delivery] = await settled(api, cid)
    assert "Unknown Webhook: the webhook was deleted" in result["error"]
    assert delivery["attempt_count"] == 1 and delivery["status"] == "failed"
    assert len(discord.requests) == 1


# -- Teams -------------------------------------------------------------------------------


async def test_teams_workflow_202_is_success(api: httpx.AsyncClient) -> None:
    """The Workflows trigger's 202 with an empty body is a delivery; the flow would run."""
    async with FakeTeams() as teams:
        cid = await create(api, "teams", {"url": teams.webhook_url()}, ["test.finished"])
        await run_to_end(api, result="passed", metrics={"requests": 10})
        [delivery] = await settled(api, cid)
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"][0]["response_status"] == 202
    assert teams.flow_failures == []
    card = teams.accepted[0]["attachments"][0]["content"]
    assert card["body"][0]["items"][0]["text"] == "✅ Load test passed: checkout"


async def test_teams_throttling_inside_a_200_is_retried(api: httpx.AsyncClient) -> None:
    """A 200 whose body reports HTTP 429 is a retry, not a delivery."""
    async with FakeTeams() as teams:
        cid = await create(api, "teams", {"url": teams.webhook_url()})
        teams.then(FakeTeams.throttled())
        result = await send_test(api, cid)
        [delivery] = await settled(api, cid)
    assert result["outcome"] == "retry" and result["response_status"] == 200
    assert "Teams throttled this webhook" in result["error"]
    assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 2


# -- HipChat and Mattermost --------------------------------------------------------------


async def test_hipchat_room_notification(api: httpx.AsyncClient) -> None:
    """HipChat's 204 is success; the notification is colored by severity."""
    async with FakeHipChat() as hipchat:
        cid = await create(api, "hipchat", {"url": hipchat.room_url()}, ["test.finished"])
        await run_to_end(api, result="failed")
        [delivery] = await settled(api, cid)
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"][0]["response_status"] == 204
    [payload] = hipchat.accepted
    assert payload["color"] == "red" and payload["message_format"] == "html"


async def test_hipchat_token_header_and_refusal(api: httpx.AsyncClient) -> None:
    """A separate ``token`` authenticates; a wrong one is logged with HipChat's message."""
    async with FakeHipChat(token="right") as hipchat:
        good = await create(
            api, "hipchat", {"url": hipchat.room_url(with_token=False), "token": "right"}
        )
        bad = await create(
            api, "hipchat", {"url": hipchat.room_url(with_token=False), "token": "wrong"}
        )
        ok = await send_test(api, good)
        refused = await send_test(api, bad)
    assert ok["ok"] is True
    assert refused["outcome"] == "failed"
    assert "HipChat said 401: Authenticated requests only." in refused["error"]
    [delivery] = await settled(api, bad)
    assert delivery["attempts"][0]["request_headers"]["Authorization"] == "****"


@pytest.mark.parametrize("rocketchat", [False, True], ids=["mattermost", "rocket.chat"])
async def test_mattermost_and_rocketchat(api: httpx.AsyncClient, rocketchat: bool) -> None:
    """Both servers take the Slack-compatible text and attachments."""
    async with FakeMattermost(rocketchat=rocketchat) as server:
        cid = await create(api, "mattermost", {"url": server.webhook_url()})
        result = await send_test(api, cid)
    assert result["ok"] is True
    assert server.ignored_keys == []  # nothing the servers would drop
    assert server.accepted[0]["attachments"][0]["color"].startswith("#")


# -- pacing ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_slack_pacing_per_webhook(api: httpx.AsyncClient) -> None:
    """Five messages to one Slack webhook go out at Slack's pace (a burst of 3, then 1/s),
    while a second channel's message is not held up behind them."""
    async with FakeSlackWebhook() as slack:
        busy_url, quiet_url = slack.webhook_url(), slack.webhook_url()
        busy = await create(api, "slack", {"webhook_url": busy_url}, ["test.started"])
        quiet = await create(api, "slack", {"webhook_url": quiet_url}, ["test.finished"])
        runs: list[int] = []
        for _ in range(5):
            r = await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})
            runs.append(int(r.json()["id"]))
        for run_id in runs:
            assert (await api.patch(f"/runs/{run_id}", json={"status": 2})).status_code == 200
        finished_at = time.time()
        r = await api.patch(f"/runs/{runs[0]}", json={"status": 3, "result": "passed"})
        assert r.status_code == 200
        await slack.wait_for(6, timeout=20)
        await settled(api, busy, 5)
        await settled(api, quiet, 1)
    busy_path = busy_url.removeprefix(slack.base_url)
    times = sorted(r.at for r in slack.requests if r.path == busy_path)
    [quiet_at] = [r.at for r in slack.requests if r.path != busy_path]
    assert len(times) == 5
    since = [round(t - times[0], 2) for t in times]
    assert since[2] < 1.5, since  # the burst of 3 (one per second would need 2 s)
    # Then one token per second: message n (from 0) leaves n - 2 seconds after the burst
    # took its tokens. Times are arrivals, and the burst's can arrive a few hundred ms after
    # it left (the first connections to the webhook), so the bounds leave room for that.
    assert since[3] >= 0.5 and since[4] >= 1.4, since
    assert since[4] - since[3] >= 0.9, since
    assert quiet_at - finished_at < 1.0  # the other webhook did not wait its turn
    assert quiet_at < times[-1]


@pytest.mark.slow
async def test_rate_limit_spaces_one_destination_only(api: httpx.AsyncClient) -> None:
    """A channel's ``rate_limit`` replaces its kind's default pace: 2 per second without a
    burst spaces four messages to its webhook half a second apart (Slack's default would
    send three at once), while another webhook's message is not held up behind them."""
    async with FakeSlackWebhook() as slack:
        paced_url, other_url = slack.webhook_url(), slack.webhook_url()
        limit = {"count": 2, "per": 1.0, "burst": 1}
        paced = await create(
            api, "slack", {"webhook_url": paced_url, "rate_limit": limit}, ["test.started"]
        )
        other = await create(api, "slack", {"webhook_url": other_url}, ["test.finished"])
        runs: list[int] = []
        for _ in range(4):
            r = await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})
            runs.append(int(r.json()["id"]))
        for run_id in runs:
            assert (await api.patch(f"/runs/{run_id}", json={"status": 2})).status_code == 200
        finished_at = time.time()
        r = await api.patch(f"/runs/{runs[0]}", json={"status": 3, "result": "passed"})
        assert r.status_code == 200
        await slack.wait_for(5, timeout=20)
        paced_deliveries = await settled(api, paced, 4)
        await settled(api, other, 1)
    assert all(d["attempt_count"] == 1 for d in paced_deliveries)  # waiting is not an attempt
    paced_path = paced_url.removeprefix(slack.base_url)
    times = sorted(r.at for r in slack.requests if r.path == paced_path)
    [other_at] = [r.at for r in slack.requests if r.path != paced_path]
    since = [round(t - times[0], 2) for t in times]
    # One token every 0.5 s: message n (from 0) leaves no earlier than n * 0.5 s after the
    # first; the margins absorb the first request's slower arrival (a new connection).
    # Slack's default (a burst of 3) would have sent messages 1 and 2 at once.
    assert since[1] >= 0.35 and since[2] >= 0.85 and since[3] >= 1.35, since
    assert since[3] - since[1] >= 0.9, since
    assert other_at - finished_at < 0.5  # the other webhook did not wait its turn
    assert other_at < times[-1]
