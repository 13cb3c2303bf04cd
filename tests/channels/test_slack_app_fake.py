"""The fake Slack shipped in loadbell.testing.fake_slack answers the way Slack's docs say,
including refusals, and loadbell's Web API client reads those answers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from yarl import URL

from loadbell.channels.slack_api import SlackClient, SlackError
from loadbell.testing.fake_slack import FakeSlackApi

REDIRECT = "http://loadbell.test/api/v1/slack/oauth/callback"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(redirect_urls=[REDIRECT]) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _authorize(slack: FakeSlackApi, **params: str) -> str:
    query = {
        "client_id": slack.client_id,
        "scope": "chat:write,chat:write.public,channels:read",
        "redirect_uri": REDIRECT,
        "state": "s1",
        **params,
    }
    return str(URL(slack.authorize_url).with_query(query))


async def _token(slack: FakeSlackApi, scope: str = "chat:write,channels:read") -> str:
    callback = URL(await slack.approve(_authorize(slack, scope=scope)))
    async with SlackClient(slack.api_url) as client:
        installed = await client.oauth_access(
            client_id=slack.client_id,
            client_secret=slack.client_secret,
            code=callback.query["code"],
            redirect_uri=REDIRECT,
        )
    return installed.bot_token


async def _call(
    http: httpx.AsyncClient,
    slack: FakeSlackApi,
    method: str,
    *,
    token: str | None = None,
    json: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    r = await http.post(f"{slack.api_url}/{method}", json=json, content=content, headers=sent)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_authorize_redirects_back_with_code_and_state(slack: FakeSlackApi) -> None:
    """ "Allow" sends the browser to redirect_uri with a code and the state untouched;
    "Cancel" with error=access_denied."""
    callback = URL(await slack.approve(_authorize(slack)))
    assert str(callback.with_query(None)) == REDIRECT
    assert callback.query["state"] == "s1" and callback.query["code"]
    slack.decline_next()
    declined = URL(await slack.approve(_authorize(slack)))
    assert dict(declined.query) == {"error": "access_denied", "state": "s1"}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"client_id": "nope"}, "invalid_client_id"),  # not this app
        ({"scope": ""}, "invalid_scope"),  # no scope asked for
        ({"scope": "admin"}, "invalid_scope"),  # a scope that does not exist
        ({"redirect_uri": "http://evil.test/cb"}, "bad_redirect_uri"),  # not registered
    ],
)
async def test_authorize_shows_an_error_page_instead_of_redirecting(
    slack: FakeSlackApi, params: dict[str, str], error: str
) -> None:
    """A malformed authorize request never redirects (that would leak the code)."""
    with pytest.raises(AssertionError, match=error):
        await slack.approve(_authorize(slack, **params))


async def test_oauth_access_checks_client_code_and_redirect(
    slack: FakeSlackApi, http: httpx.AsyncClient
) -> None:
    """oauth.v2.access: Basic or form credentials; single-use codes; same redirect_uri."""

    async def exchange(code: str, **form: str) -> dict[str, Any]:
        r = await http.post(f"{slack.api_url}/oauth.v2.access", data={"code": code, **form})
        return dict(r.json())

    cases = [
        # (form fields, Slack's answer)
        ({"client_id": "nope", "client_secret": slack.client_secret}, "invalid_client_id"),
        ({"client_id": slack.client_id, "client_secret": "wrong"}, "bad_client_secret"),
        (
            {
                "client_id": slack.client_id,
                "client_secret": slack.client_secret,
                "redirect_uri": REDIRECT + "/other",
            },
            "bad_redirect_uri",
        ),
    ]
    for form, error in cases:
        fresh = URL(await slack.approve(_authorize(slack))).query["code"]
        assert await exchange(fresh, **form) == {"ok": False, "error": error}

    fresh = URL(await slack.approve(_authorize(slack))).query["code"]
    good = {
        "client_id": slack.client_id,
        "client_secret": slack.client_secret,
        "redirect_uri": REDIRECT,
    }
    answer = await exchange(fresh, **good)
    assert answer["ok"] is True and answer["token_type"] == "bot"
    assert answer["access_token"].startswith("xoxb-")
    assert answer["team"] == {"id": "T0FAKE001", "name": "Fake Workspace"}
    assert await exchange(fresh, **good) == {"ok": False, "error": "invalid_code"}  # reused
    assert await exchange("made-up", **good) == {"ok": False, "error": "invalid_code"}

    fresh = URL(await slack.approve(_authorize(slack))).query["code"]
    basic = base64.b64encode(f"{slack.client_id}:{slack.client_secret}".encode()).decode()
    r = await http.post(
        f"{slack.api_url}/oauth.v2.access",
        data={"code": fresh, "redirect_uri": REDIRECT},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.json()["ok"] is True


async def test_web_api_rejects_missing_and_invalid_tokens(
    slack: FakeSlackApi, http: httpx.AsyncClient
) -> None:
    """No token is not_authed, an unknown or revoked one invalid_auth (HTTP 200, ok:false)."""
    channel = slack.add_channel("load-tests")
    message = {"channel": channel.id, "text": "hi"}
    assert await _call(http, slack, "chat.postMessage", json=message) == {
        "ok": False,
        "error": "not_authed",
    }
    assert (await _call(http, slack, "chat.postMessage", token="xoxb-made-up", json=message))[
        "error"
    ] == "invalid_auth"
    token = await _token(slack, "chat:write,chat:write.public")
    assert (await _call(http, slack, "chat.postMessage", token=token, json=message))["ok"] is True
    slack.revoke(token)
    assert (await _call(http, slack, "chat.postMessage", token=token, json=message))[
        "error"
    ] == "invalid_auth"
    assert len(slack.messages) == 1


async def test_post_message_refusals(slack: FakeSlackApi, http: httpx.AsyncClient) -> None:
    """chat.postMessage refuses what Slack refuses, each with Slack's error code."""
    public = slack.add_channel("load-tests")
    private = slack.add_channel("secret", private=True)
    archived = slack.add_channel("old", archived=True)
    narrow = await _token(slack, "chat:write,channels:read")  # no chat:write.public
    wide = await _token(slack, "chat:write,chat:write.public,channels:read")
    reading = await _token(slack, "channels:read")
    cases: list[tuple[str, dict[str, Any] | None, bytes | None, str]] = [
        # (token, JSON body, raw body, error)
        (wide, {"channel": "C99999999", "text": "x"}, None, "channel_not_found"),
        (wide, {"channel": private.id, "text": "x"}, None, "channel_not_found"),  # hidden
        (wide, {"text": "x"}, None, "channel_not_found"),  # no channel at all
        (wide, {"channel": archived.id, "text": "x"}, None, "is_archived"),
        (narrow, {"channel": public.id, "text": "x"}, None, "not_in_channel"),
        (reading, {"channel": public.id, "text": "x"}, None, "missing_scope"),
        (wide, {"channel": public.id}, None, "no_text"),
        (
            wide,
            {"channel": public.id, "blocks": [{"type": "divider"}] * 51},
            None,
            "invalid_blocks",
        ),
        (
            wide,
            {
                "channel": public.id,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
            },
            None,
            "invalid_blocks",
        ),
        (wide, None, b'{"channel": ', "invalid_json"),
    ]
    for token, body, raw, error in cases:
        headers = {"Content-Type": "application/json"} if raw is not None else None
        answer = await _call(
            http, slack, "chat.postMessage", token=token, json=body, content=raw, headers=headers
        )
        assert answer["ok"] is False and answer["error"] == error, (body, answer)
    assert slack.messages == []
    # Names work for chat.postMessage, with or without '#'.
    for ref in ("#load-tests", "load-tests"):
        answer = await _call(
            http, slack, "chat.postMessage", token=wide, json={"channel": ref, "text": "x"}
        )
        assert answer["ok"] is True and answer["channel"] == public.id


async def test_rate_limit_is_http_429_with_retry_after(
    slack: FakeSlackApi, http: httpx.AsyncClient
) -> None:
    """rate_limit_next() makes chat.postMessage answer 429 + Retry-After, then recover."""
    channel = slack.add_channel("load-tests")
    token = await _token(slack, "chat:write,channels:read")
    channel.members.add(slack.teams["T0FAKE001"].bot_user_id)
    slack.rate_limit_next(1, retry_after=7)
    url = f"{slack.api_url}/chat.postMessage"
    headers = {"Authorization": f"Bearer {token}"}
    r = await http.post(url, json={"channel": channel.id, "text": "x"}, headers=headers)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json() == {"ok": False, "error": "ratelimited"}
    r = await http.post(url, json={"channel": channel.id, "text": "x"}, headers=headers)
    assert r.json()["ok"] is True


async def test_client_reads_channels_the_way_the_target_check_needs(slack: FakeSlackApi) -> None:
    """conversations.info takes IDs (names are channel_not_found), hides private channels
    the bot is not in; conversations.list pages through public channels only."""
    public = slack.add_channel("load-tests")
    private = slack.add_channel("secret", private=True)
    for i in range(250):  # more than one page of 200
        slack.add_channel(f"bulk-{i:03d}")
    token = await _token(slack)
    async with SlackClient(slack.api_url) as client:
        found = await client.conversation(token, public.id)
        assert (found.name, found.is_public_channel) == ("load-tests", True)
        for ref in ("#load-tests", private.id):
            with pytest.raises(SlackError) as exc:
                await client.conversation(token, ref)
            assert exc.value.error == "channel_not_found"
        listed = await client.public_channels(token)
        assert len(listed) == 251 and "secret" not in {c.name for c in listed}
        with pytest.raises(SlackError) as exc:
            await client.conversation("xoxb-made-up", public.id)
        assert exc.value.error == "invalid_auth"
    assert [m for m, _ in slack.calls].count("conversations.list") == 2
