"""The Slack app's install flow (OAuth v2), removal, target checks and the test message,
through the real server, against the fake Slack, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from yarl import URL

from api.slack_support import CALLBACK, browser_get, create_slack_app, install, start_install
from api.support import assert_error, scoped_token
from conftest import Server
from loadbell.domain.roles import Role
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import channel_overrides, channels, slack_install_states
from loadbell.testing.fake_slack import FakeSlackApi

UNTIL_FIXED = (
    "until these targets are fixed, 'Send Test Message' is refused and messages to them are "
    "not posted: fix them in Slack and save config.targets again, or remove them"
)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(redirect_urls=[CALLBACK]) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, slack: FakeSlackApi) -> Settings:
    return settings.model_copy(update=slack.settings())


async def _row(settings: Settings, table: sa.Table, *where: Any) -> Any:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.select(table).where(*where))).one()
    finally:
        await engine.dispose()


async def _effective(api: httpx.AsyncClient, channel_id: int, project_id: int) -> Any:
    r = await api.get(f"/channels/{channel_id}/effective", params={"project_id": project_id})
    assert r.status_code == 200, r.text
    return r.json()


async def test_install_flow_stores_token_encrypted_and_shows_workspace(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi, settings: Settings
) -> None:
    """Authorize redirect -> Slack's "Allow" -> callback stores the bot token encrypted and
    the workspace name, which GET /channels/{id} and the effective view show."""
    channel = await create_slack_app(api)
    r = await start_install(api, channel["id"])
    assert r.status_code == 302, r.text
    location = URL(r.headers["location"])
    assert str(location.with_query(None)) == slack.authorize_url
    assert location.query["client_id"] == slack.client_id
    assert location.query["scope"] == "chat:write,chat:write.public,channels:read"
    assert location.query["redirect_uri"] == CALLBACK
    assert len(location.query["state"]) >= 40
    assert r.json()["authorize_url"] == str(location)

    callback = URL(await slack.approve(str(location)))
    assert str(callback.with_query(None)) == CALLBACK
    assert callback.query["state"] == location.query["state"]
    r = await browser_get(app_server.url, str(callback))
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["workspace"] == "Fake Workspace"
    assert "Fake Workspace" in done["message"]
    assert done["warnings"] == [
        "no target channels yet: set config.targets (public channels, e.g. #load-tests)"
    ]
    # The fake got the code with Basic client credentials and the same redirect_uri.
    method, params = slack.calls[-1]
    assert method == "oauth.v2.access" and params["redirect_uri"] == CALLBACK

    token = slack.tokens_of("T0FAKE001")[0]
    shown = (await api.get(f"/channels/{channel['id']}")).json()["config"]
    assert shown["workspace"] == "Fake Workspace"
    assert shown["team_id"] == "T0FAKE001"
    assert shown["bot_token"] == "****"
    assert shown["api_base_url"] == slack.api_url
    row = await _row(settings, channels, channels.c.id == channel["id"])
    assert "bot_token" not in row.config and token not in str(row.config)
    assert token not in row.secrets
    assert SecretBox(settings.secret_key or "").open(row.secrets)["bot_token"] == token

    eff = await _effective(api, channel["id"], 1)
    assert eff["config"]["workspace"] == "Fake Workspace"
    assert eff["config"]["bot_token"] == "****"
    assert eff["sources"]["workspace"] == "organization"


async def test_callback_rejects_tampered_replayed_and_expired_state(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi, settings: Settings
) -> None:
    """The state is the callback's credential: a changed, reused or expired one is refused
    with a clear message and nothing is stored."""
    channel = await create_slack_app(api)
    r = await start_install(api, channel["id"])
    callback = URL(await slack.approve(r.headers["location"]))
    state = callback.query["state"]
    tampered = callback.update_query(state=state[:-2] + ("AA" if state[-2:] != "AA" else "BB"))

    body = assert_error(await browser_get(app_server.url, str(tampered)), 400)
    assert body["error"] == "invalid_state" and "not one loadbell issued" in body["message"]
    body = assert_error(
        await browser_get(app_server.url, str(callback.without_query_params("state"))), 400
    )
    assert "no state" in body["message"]

    assert (await browser_get(app_server.url, str(callback))).status_code == 200
    body = assert_error(await browser_get(app_server.url, str(callback)), 400)
    assert "already used" in body["message"]

    # A second install link, left lying around past its 10 minutes.
    await api.delete("/slack/install", params={"channel_id": channel["id"]})
    r = await start_install(api, channel["id"])
    late = await slack.approve(r.headers["location"])
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(sa.update(slack_install_states).values(expires_at=1.0))
    await engine.dispose()
    body = assert_error(await browser_get(app_server.url, late), 400)
    assert "expired after 10 minutes" in body["message"]
    assert "workspace" not in (await api.get(f"/channels/{channel['id']}")).json()["config"]


async def test_declined_or_refused_install_changes_nothing(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """Cancel on Slack's page (error=access_denied) and Slack refusing the code are 400s
    that say what happened; the channel keeps no install data."""
    channel = await create_slack_app(api)
    slack.decline_next()
    r = await start_install(api, channel["id"])
    body = assert_error(
        await browser_get(app_server.url, await slack.approve(r.headers["location"])), 400
    )
    assert body["error"] == "slack_declined" and "access_denied" in body["message"]

    slack.fail_next("oauth.v2.access", "invalid_code")
    r = await start_install(api, channel["id"])
    body = assert_error(
        await browser_get(app_server.url, await slack.approve(r.headers["location"])), 400
    )
    assert body["error"] == "slack_refused"
    assert "invalid_code" in body["message"] and "already used or has expired" in body["message"]
    assert "bot_token" not in (await api.get(f"/channels/{channel['id']}")).json()["config"]


async def test_install_needs_an_admin_a_slack_app_channel_and_app_credentials(
    api: httpx.AsyncClient, app_server: Server, settings: Settings
) -> None:
    """Members get 403, other kinds 422; a server without client ID/secret says which
    settings to set."""
    channel = await create_slack_app(api)
    member = await scoped_token(settings, 1, Role.MEMBER)
    async with app_server.client(member) as as_member:
        assert_error(await start_install(as_member, channel["id"]), 403)
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": "hook",
            "config": {"url": "http://127.0.0.1:9/hook"},
        },
    )
    assert_error(await start_install(api, r.json()["id"]), 422, "channel_id")
    # The same server, as if started without LOADBELL_SLACK_CLIENT_SECRET.
    state = app_server.app.state.loadbell  # type: ignore[attr-defined]
    state.settings = settings.model_copy(update={"slack_client_secret": None})
    body = assert_error(await start_install(api, channel["id"]), 503)
    assert "LOADBELL_SLACK_CLIENT_SECRET" in body["message"]


async def test_targets_must_be_public_channels(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """@users are refused by validation; private, archived and unknown channels by asking
    Slack (conversations.info for IDs, conversations.list for names) on save."""
    slack.add_channel("load-tests")
    alerts = slack.add_channel("alerts")
    private = slack.add_channel("secret-ops", private=True)
    private_member = slack.add_channel("inner-circle", private=True, bot_member=True)
    archived = slack.add_channel("old-tests", archived=True)

    body = assert_error(
        await api.post(
            "/channels",
            json={
                "organization_id": 1,
                "kind": "slack_app",
                "name": "s",
                "config": {"targets": "#load-tests @bob"},
            },
        ),
        422,
        "config.targets",
    )
    assert "'@bob' points at a user" in body["message"]

    channel = await create_slack_app(api, "#load-tests")
    await install(api, app_server.url, slack, channel["id"])
    url = f"/channels/{channel['id']}"

    async def patch(targets: str) -> httpx.Response:
        return await api.patch(url, json={"config": {"targets": targets}})

    cases = [
        # (targets, what the message says)
        (f"#load-tests {private.id}", f"{private.id} is not a public channel"),
        ("#secret-ops", "#secret-ops is not a public channel"),
        (private_member.id, "is a private channel"),
        ("#inner-circle", "#inner-circle is not a public channel"),
        (archived.id, "is archived"),
        ("#old-tests", "is archived"),
        ("#no-such-channel", "#no-such-channel is not a public channel"),
        ("U0123ABCD", "points at a user"),
        ("D0123ABCD", "direct message"),
    ]
    for targets, says in cases:
        body = assert_error(await patch(targets), 422, "config.targets")
        assert says in body["message"], (targets, body)
    assert (await api.get(url)).json()["config"]["targets"] == "#load-tests"

    # A name and the ID of one channel would post every message there twice.
    body = assert_error(await patch(f"#load-tests {alerts.id} #Alerts"), 422, "config.targets")
    assert body["message"] == (
        f"config.targets: #alerts is the same channel as {alerts.id}; list it once "
        "(each target gets its own message)"
    )
    r = await patch(f"#load-tests {alerts.id}")
    assert r.status_code == 200, r.text
    assert r.json()["config"]["targets"] == f"#load-tests {alerts.id}"
    methods = [m for m, _ in slack.calls]
    assert "conversations.info" in methods and "conversations.list" in methods


async def test_install_data_cannot_be_typed_in(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """bot_token and workspace come from the install flow only; echoing the masked values
    GET showed is fine."""
    body = assert_error(
        await api.post(
            "/channels",
            json={
                "organization_id": 1,
                "kind": "slack_app",
                "name": "s",
                "config": {"targets": "", "bot_token": "xoxb-typed"},
            },
        ),
        422,
        "config.bot_token",
    )
    assert "install flow" in body["message"]
    channel = await create_slack_app(api)
    await install(api, app_server.url, slack, channel["id"])
    url = f"/channels/{channel['id']}"
    assert_error(await api.patch(url, json={"config": {"bot_token": "xoxb-evil"}}), 422)
    assert_error(await api.patch(url, json={"config": {"workspace": "Elsewhere"}}), 422)
    assert_error(await api.patch(url, json={"config": {"api_base_url": "http://x.test"}}), 422)
    shown = (await api.get(url)).json()["config"]
    r = await api.patch(url, json={"config": {**shown, "targets": ""}})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["workspace"] == "Fake Workspace"


async def test_project_override_with_its_own_install_then_removal_falls_back(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """A project's own install overrides the organization's integration data; removing it
    falls back to the organization's (seed 003: never "empty")."""
    slack.add_channel("org-tests")
    project_ws = slack.add_team("T0PROJ002", "Project Workspace")
    slack.add_channel("proj-tests", team_id=project_ws.id)
    channel = await create_slack_app(api, "#org-tests")
    await install(api, app_server.url, slack, channel["id"])

    slack.install_team = project_ws.id
    done = await install(api, app_server.url, slack, channel["id"], project_id=1)
    assert done["workspace"] == "Project Workspace" and done["project_id"] == 1
    # Targets inherited from the organization do not exist in the project's workspace.
    assert done["warnings"] == [
        "#org-tests is not a public channel of Project Workspace (it "
        "does not exist, or it is private: the Slack app posts to "
        "public channels only)",
        UNTIL_FIXED,
    ]

    eff = await _effective(api, channel["id"], 1)
    assert eff["config"]["workspace"] == "Project Workspace"
    assert eff["sources"]["workspace"] == "project" and eff["sources"]["bot_token"] == "project"
    assert eff["override"]["config"]["bot_token"] == "****"
    org = (await api.get(f"/channels/{channel['id']}")).json()["config"]
    assert org["workspace"] == "Fake Workspace"

    # The project's targets are checked against the project's own workspace.
    put = f"/channels/{channel['id']}/overrides/1"
    kept = eff["override"]["config"]
    body = assert_error(await api.put(put, json={"config": {**kept, "targets": "#org-tests"}}), 422)
    assert "Project Workspace" in body["message"]
    r = await api.put(put, json={"enabled": True, "config": {**kept, "targets": "#proj-tests"}})
    assert r.status_code == 200, r.text
    # A PUT that leaves the install out would drop it silently: refused, with the way out.
    body = assert_error(await api.put(put, json={"config": {"targets": "#proj-tests"}}), 422)
    assert "DELETE /api/v1/slack/install" in body["message"]

    r = await api.delete("/slack/install", params={"channel_id": channel["id"], "project_id": 1})
    assert r.status_code == 200, r.text
    assert r.json()["removed"] is True
    assert "organization's Slack workspace 'Fake Workspace'" in r.json()["message"]
    eff = await _effective(api, channel["id"], 1)
    assert eff["config"]["workspace"] == "Fake Workspace"
    assert eff["sources"]["workspace"] == "organization"
    assert eff["sources"]["bot_token"] == "organization"
    assert eff["config"]["targets"] == "#proj-tests"  # the project's other values stay
    assert eff["enabled"] is True

    r = await api.delete("/slack/install", params={"channel_id": channel["id"]})
    assert r.json()["removed"] is True
    org = (await api.get(f"/channels/{channel['id']}")).json()["config"]
    assert not {"bot_token", "workspace", "team_id", "api_base_url"} & set(org)
    assert "bot_token" not in (await _effective(api, channel["id"], 1))["config"]


async def test_send_test_only_with_a_complete_configuration(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi, settings: Settings
) -> None:
    """The test message needs integration data and targets, own or inherited; otherwise a
    409 says what is missing. A project's test goes to its own targets."""
    slack.add_channel("load-tests")
    proj = slack.add_channel("proj-tests")
    channel = await create_slack_app(api)
    test = f"/channels/{channel['id']}/test"

    body = assert_error(await api.post(test), 409)
    assert "integration data" in body["message"] and "target channels" in body["message"]
    await install(api, app_server.url, slack, channel["id"])
    body = assert_error(await api.post(test), 409)
    assert "integration data" not in body["message"] and "target channels" in body["message"]
    body = assert_error(await api.post(test, params={"project_id": 1}), 409)
    assert "for project 1" in body["message"]

    # The project sets targets; the integration is inherited from the organization.
    r = await api.put(
        f"/channels/{channel['id']}/overrides/1", json={"config": {"targets": proj.id}}
    )
    assert r.status_code == 200, r.text
    r = await api.post(test, params={"project_id": 1})
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.json()
    assert [m.channel_id for m in slack.messages] == [proj.id]
    assert slack.messages[0].token == slack.tokens_of("T0FAKE001")[0]
    assert "test message" in (slack.messages[0].text or "")
    # The organization itself still has no targets.
    assert_error(await api.post(test), 409)

    row = await _row(
        settings,
        channel_overrides,
        channel_overrides.c.channel_id == channel["id"],
        channel_overrides.c.project_id == 1,
    )
    assert row.config == {"targets": proj.id} and row.secrets is None


async def test_targets_saved_before_the_install_are_checked_by_it(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """Targets saved without a token are checked when the app is installed: a private
    channel, and a name and ID of one channel, block the test message with a 409 naming
    them, and real deliveries to them fail without a post, until the targets are saved
    again and pass."""
    load_tests = slack.add_channel("load-tests")
    alerts = slack.add_channel("alerts")
    private = slack.add_channel("secret-ops", private=True)
    channel = await create_slack_app(api, f"#load-tests #secret-ops #alerts {alerts.id}")
    url = f"/channels/{channel['id']}"

    done = await install(api, app_server.url, slack, channel["id"])
    secret_ops = (
        "#secret-ops is not a public channel of Fake Workspace (it does not exist, or it is "
        "private: the Slack app posts to public channels only)"
    )
    same = (
        f"{alerts.id} is the same channel as #alerts; list it once "
        "(each target gets its own message)"
    )
    assert done["warnings"] == [secret_ops, same, UNTIL_FIXED]
    shown = (await api.get(url)).json()["config"]
    assert shown["target_problems"] == {
        "team_id": "T0FAKE001",
        "targets": {"#secret-ops": secret_ops, alerts.id: same},
    }

    body = assert_error(await api.post(f"{url}/test"), 409)
    assert secret_ops in body["message"] and same in body["message"]
    assert "save config.targets again" in body["message"]
    assert slack.messages == []

    # A run: the good targets get one message each, the refused ones fail unposted.
    r = await api.patch(url, json={"events": ["test.started"]})
    assert r.status_code == 200, r.text
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
    deliveries = await _settled(api, channel["id"], 4)
    by_target = {d["target"]: d for d in deliveries}
    assert by_target["#load-tests"]["status"] == "succeeded"
    assert by_target["#alerts"]["status"] == "succeeded"
    for target in ("#secret-ops", alerts.id):
        assert by_target[target]["status"] == "failed"
        assert "not posted" in by_target[target]["last_error"]
    assert sorted(m.channel_id for m in slack.messages) == sorted([load_tests.id, alerts.id])

    # Typing the check's result is refused; echoing what GET showed is fine.
    assert_error(await api.patch(url, json={"config": {"target_problems": None}}), 422)
    unchanged = {k: v for k, v in shown.items() if k != "targets"}
    r = await api.patch(url, json={"config": unchanged})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["target_problems"] == shown["target_problems"]
    # Saving the targets again checks them: still refused while the channel is private...
    body = assert_error(await api.patch(url, json={"config": shown}), 422, "config.targets")
    assert secret_ops in body["message"] and same in body["message"]
    # ...and once it is public, and listed once, the check passes and is forgotten.
    private.is_private = False
    r = await api.patch(url, json={"config": {"targets": "#load-tests #secret-ops #alerts"}})
    assert r.status_code == 200, r.text
    assert "target_problems" not in r.json()["config"]
    r = await api.post(f"{url}/test")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.json()


async def test_removing_the_install_forgets_its_target_check(
    api: httpx.AsyncClient, app_server: Server, slack: FakeSlackApi
) -> None:
    """A project's own install checks the inherited targets in its workspace; removing it
    drops that check, and the organization's install (where they exist) applies again."""
    slack.add_channel("org-tests")
    project_ws = slack.add_team("T0PROJ002", "Project Workspace")
    channel = await create_slack_app(api, "#org-tests")
    await install(api, app_server.url, slack, channel["id"])
    slack.install_team = project_ws.id
    await install(api, app_server.url, slack, channel["id"], project_id=1)
    test = f"/channels/{channel['id']}/test"
    body = assert_error(await api.post(test, params={"project_id": 1}), 409)
    assert "#org-tests is not a public channel of Project Workspace" in body["message"]
    r = await api.post(test)  # the organization's own check passed
    assert r.status_code == 200 and r.json()["ok"] is True, r.text

    r = await api.delete("/slack/install", params={"channel_id": channel["id"], "project_id": 1})
    assert r.status_code == 200, r.text
    assert "target_problems" not in (await _effective(api, channel["id"], 1))["config"]
    r = await api.post(test, params={"project_id": 1})
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


async def _settled(api: httpx.AsyncClient, channel_id: int, count: int) -> list[dict[str, Any]]:
    """The channel's deliveries once ``count`` exist and none is pending."""
    deadline = time.monotonic() + 15
    while True:
        r = await api.get("/deliveries", params={"channel_id": channel_id})
        items = r.json()["items"]
        if len(items) >= count and all(d["status"] != "pending" for d in items):
            return list(items)
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.05)
