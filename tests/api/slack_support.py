"""Helpers for the Slack app tests: the install flow as a browser walks it, against the fake."""

from __future__ import annotations

from typing import Any

import httpx
from yarl import URL

from loadbell.testing.fake_slack import FakeSlackApi

# Settings.public_url in the tests is http://loadbell.test: Slack (the fake) redirects the
# browser there, and the test plays the browser by sending that request to the real server.
CALLBACK = "http://loadbell.test/api/v1/slack/oauth/callback"


def on_server(url: str, server_url: str) -> str:
    """``url`` (on the public URL) as the test server serves it."""
    public = URL(url)
    return str(URL(server_url).with_path(public.path).with_query(public.query))


async def browser_get(server_url: str, url: str) -> httpx.Response:
    """A request without our API token, like the browser coming back from Slack."""
    async with httpx.AsyncClient(timeout=30) as browser:
        return await browser.get(on_server(url, server_url))


async def start_install(
    api: httpx.AsyncClient, channel_id: int, project_id: int | None = None
) -> httpx.Response:
    params: dict[str, Any] = {"channel_id": channel_id}
    if project_id is not None:
        params["project_id"] = project_id
    return await api.get("/slack/install", params=params)


async def install(
    api: httpx.AsyncClient,
    server_url: str,
    slack: FakeSlackApi,
    channel_id: int,
    project_id: int | None = None,
) -> dict[str, Any]:
    """Set up Slack integration: loadbell -> Slack's "Allow" -> the callback. Returns the
    callback's JSON."""
    r = await start_install(api, channel_id, project_id)
    assert r.status_code == 302, r.text
    callback = await slack.approve(r.headers["location"])
    r = await browser_get(server_url, callback)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def create_slack_app(
    api: httpx.AsyncClient, targets: str = "", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organization_id": 1,
        "kind": "slack_app",
        "name": "slack",
        "config": {"targets": targets},
        **extra,
    }
    r = await api.post("/channels", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())
