"""Slack app deliveries end to end: a run's events go through the worker and the one sender
to the fake Slack's chat.postMessage, one per target; Slack's ok:false answers land in the
attempt log. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.slack_support import CALLBACK, create_slack_app, install
from api.support import all_done, new_run, set_status, wait_deliveries
from conftest import Server
from loadbell.settings import Settings
from loadbell.testing.fake_slack import FakeSlackApi


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(redirect_urls=[CALLBACK]) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, slack: FakeSlackApi) -> Settings:
    return settings.model_copy(update=slack.settings())


async def _finish_run(api: httpx.AsyncClient, project_id: int = 1) -> dict[str, Any]:
    run = await new_run(api, project_id=project_id)
    await set_status(api, run["id"], 2)
    metrics = {"requests": 1200, "avg_ms": 120.5, "p95_ms": 310.0, "error_rate": 0.01}
    await set_status(api, run["id"], 3, result="passed", metrics=metrics)
    return run


async def test_finished_run_posts_to_every_target_with_the_bot_token(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """test.finished goes to each target through chat.postMessage, authenticated with the
    installed bot token, which the attempt log masks."""
    load_tests = slack.add_channel("load-tests")
    alerts = slack.add_channel("alerts")
    channel = await create_slack_app(api, f"#load-tests {alerts.id}", events=["test.finished"])
    await install(api, app_server.url, slack, channel["id"])
    run = await _finish_run(api)

    items = await wait_deliveries(api, all_done, channel_id=channel["id"], run_id=run["id"])
    assert sorted(d["target"] for d in items) == sorted(["#load-tests", alerts.id])
    assert {d["status"] for d in items} == {"succeeded"}
    token = slack.tokens_of("T0FAKE001")[0]
    assert sorted(m.channel_id for m in slack.messages) == sorted([load_tests.id, alerts.id])
    for message in slack.messages:
        assert message.token == token
        assert "Load test passed" in (message.text or "")
        assert message.blocks and message.blocks[0]["type"] == "header"
        assert message.body["channel"] in ("#load-tests", alerts.id)
    attempt = items[0]["attempts"][0]
    assert attempt["request_url"] == f"{slack.api_url}/chat.postMessage"
    assert attempt["request_headers"]["Authorization"] == "****"
    assert attempt["response_status"] == 200 and '"ok":true' in attempt["response_body"]


async def test_project_with_its_own_install_posts_with_its_own_token(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """A project's own install (and targets) override the organization's for its runs."""
    slack.add_channel("org-tests")
    team = slack.add_team("T0PROJ002", "Project Workspace")
    proj = slack.add_channel("proj-tests", team_id=team.id)
    channel = await create_slack_app(api, "#org-tests", events=["test.finished"])
    await install(api, app_server.url, slack, channel["id"])
    slack.install_team = team.id
    await install(api, app_server.url, slack, channel["id"], project_id=1)
    eff = (await api.get(f"/channels/{channel['id']}/effective", params={"project_id": 1})).json()
    r = await api.put(
        f"/channels/{channel['id']}/overrides/1",
        json={"config": {**eff["override"]["config"], "targets": "#proj-tests"}},
    )
    assert r.status_code == 200, r.text

    run = await _finish_run(api)
    items = await wait_deliveries(api, all_done, channel_id=channel["id"], run_id=run["id"])
    assert [d["status"] for d in items] == ["succeeded"], items
    assert [(m.team_id, m.channel_id) for m in slack.messages] == [(team.id, proj.id)]
    assert slack.messages[0].token == slack.tokens_of(team.id)[0]


async def test_slack_errors_are_recorded_in_the_attempt_log(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """HTTP 200 + ok:false fails the delivery with Slack's code and a hint (archived
    channel, revoked token); a 429 is retried after Retry-After and then delivered."""
    load_tests = slack.add_channel("load-tests")
    channel = await create_slack_app(api, "#load-tests", events=["test.finished"])
    await install(api, app_server.url, slack, channel["id"])

    load_tests.is_archived = True  # archived in Slack after the targets were saved
    run = await _finish_run(api)
    [item] = await wait_deliveries(api, all_done, channel_id=channel["id"], run_id=run["id"])
    assert item["status"] == "failed" and item["attempt_count"] == 1
    attempt = item["attempts"][0]
    assert attempt["outcome"] == "failed" and attempt["response_status"] == 200
    assert attempt["error"].startswith("HTTP 200: Slack said is_archived: the channel is archived")
    assert '"error":"is_archived"' in attempt["response_body"]

    load_tests.is_archived = False
    slack.rate_limit_next(1, retry_after=0.2)
    run = await _finish_run(api)
    [item] = await wait_deliveries(api, all_done, channel_id=channel["id"], run_id=run["id"])
    assert item["status"] == "succeeded"
    first, second = item["attempts"]
    assert first["outcome"] == "retry" and first["response_status"] == 429
    assert "ratelimited; retrying after 0.2 s" in first["error"]
    assert second["outcome"] == "delivered"

    slack.revoke(slack.tokens_of("T0FAKE001")[0])
    run = await _finish_run(api)
    [item] = await wait_deliveries(api, all_done, channel_id=channel["id"], run_id=run["id"])
    assert item["status"] == "failed"
    assert "Slack said invalid_auth" in item["attempts"][0]["error"]
    assert "set up the Slack integration again" in item["last_error"]
