"""The channel as a project sees it: one answer from the API, the web pages, the fan-out
and the worker, and from the statement that reads overrides with the channels."""

from __future__ import annotations

import re

import httpx
import pytest

from api.support import create_webhook, list_deliveries, new_run, set_status
from conftest import Server
from loadbell.channels.registry import get_kind
from loadbell.domain.inheritance import Source, override_applies
from loadbell.security.secretbox import SecretBox
from loadbell.services.channel_view import as_seen_by
from loadbell.store.channels import ChannelRow, OverrideRow, channels_with_overrides
from loadbell.store.db import create_engine
from loadbell.testing import RecordingReceiver

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _signed_in(server: Server) -> httpx.AsyncClient:
    """A browser-like client (cookies, forms) signed in with the server's owner token."""
    web = httpx.AsyncClient(base_url=server.url, timeout=30.0)
    page = await web.get("/login")
    csrf = CSRF.search(page.text)
    assert csrf is not None, page.text
    r = await web.post(
        "/login", data={"method": "token", "token": server.token, "csrf": csrf.group(1)}
    )
    assert r.status_code in (302, 303), r.text
    return web


def _badge(html: str, label: str) -> str:
    """The source badge of the settings row whose label is ``label``."""
    row = re.search(rf">{label}</label>.*?</tr>", html, re.S)
    assert row is not None, f"no row {label!r}"
    badge = re.findall(r'class="badge src-[a-z]+">([^<]+)<', row.group(0))
    assert badge, row.group(0)
    return badge[-1]


_BADGE = {"project": "overridden here", "organization": "inherited", "default": "default"}


async def test_api_page_and_delivery_agree(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """For an org channel with a project override, the effective view of the API, the
    project's settings page and list, and what the worker sends all say the same, with the
    override's URL and headers and then with the project's "send messages" off."""
    channel = await create_webhook(
        api,
        f"{receiver.url}/org",
        config={"url": f"{receiver.url}/org", "format": "loadimpact", "headers": {"X-Org": "o"}},
    )
    cid = channel["id"]
    r = await api.post("/projects", json={"organization_id": 1, "name": "Second"})
    assert r.status_code == 201, r.text
    second = r.json()["id"]
    r = await api.put(
        f"/channels/{cid}/overrides/{second}",
        json={"config": {"url": f"{receiver.url}/project", "headers": {"X-P": "p"}}},
    )
    assert r.status_code == 200, r.text

    # The API.
    r = await api.get(f"/channels/{cid}/effective", params={"project_id": second})
    assert r.status_code == 200, r.text
    eff = r.json()
    assert eff["enabled"] is True
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

    # The pages.
    web = await _signed_in(app_server)
    try:
        page = await web.get(f"/integrations/{cid}/projects/{second}")
        assert page.status_code == 200, page.text
        assert _badge(page.text, "Send messages") == _BADGE[eff["sources"]["enabled"]]
        assert _badge(page.text, "Webhook URL") == _BADGE[eff["sources"]["url"]]
        assert _badge(page.text, "Format") == _BADGE[eff["sources"]["format"]]
        listed = await web.get(f"/projects/{second}/integrations")
        assert "Inherited, with project overrides" in listed.text

        # The delivery path: the worker sends to the project's URL with its headers.
        run = await new_run(api, project_id=second)
        await set_status(api, run["id"], 2)
        [got] = await receiver.wait_for(1)
        headers = {k.lower(): v for k, v in got.headers.items()}
        assert got.path == "/project"
        assert headers.get("x-p") == "p" and "x-org" not in headers

        # Switched off in the project: the API, the pages and the fan-out agree again.
        r = await api.put(f"/channels/{cid}/overrides/{second}", json={"enabled": False})
        assert r.status_code == 200, r.text
        r = await api.get(f"/channels/{cid}/effective", params={"project_id": second})
        assert r.json()["enabled"] is False and r.json()["sources"]["enabled"] == "project"
        page = await web.get(f"/integrations/{cid}/projects/{second}")
        assert _badge(page.text, "Send messages") == "overridden here"
        assert "<strong>Disabled</strong>" in page.text
        listed = await web.get(f"/projects/{second}/integrations")
        assert "Disabled in this project" in listed.text
    finally:
        await web.aclose()
    quiet = await new_run(api, project_id=second)
    await set_status(api, quiet["id"], 2)
    assert await list_deliveries(api, run_id=quiet["id"]) == []


def _channel(project_id: int | None, **config: object) -> ChannelRow:
    return ChannelRow(
        id=1,
        organization_id=1,
        project_id=project_id,
        kind="webhook",
        name="hook",
        enabled=True,
        config={"url": "http://127.0.0.1:9/org", "format": "loadimpact", **config},
        events=["test.started"],
        filters={},
        retry={},
    )


OVERRIDE = OverrideRow(enabled=False, config={"url": "http://127.0.0.1:9/project"})


@pytest.mark.parametrize(
    ("channel_project", "seen_by", "url", "enabled"),
    [
        # An organization channel seen by a project: the override on top.
        (None, 7, "http://127.0.0.1:9/project", False),
        # Seen by no project (a project-less event): the organization's.
        (None, None, "http://127.0.0.1:9/org", True),
        # A project's own channel has no override, whoever asks.
        (7, 7, "http://127.0.0.1:9/org", True),
    ],
)
def test_as_seen_by_applies_an_override_only_to_an_org_channel_seen_by_a_project(
    channel_project: int | None, seen_by: int | None, url: str, enabled: bool
) -> None:
    """An override counts only where ``override_applies`` says; defaults fill the rest."""
    seen = as_seen_by(_channel(channel_project), OVERRIDE, seen_by)
    assert (seen.config["url"], seen.enabled) == (url, enabled)
    assert seen.config["headers"] == get_kind("webhook").defaults["headers"]
    assert seen.sources["headers"] is Source.DEFAULT


async def test_the_channels_statement_reads_overrides_by_the_same_rule(
    api: httpx.AsyncClient, app_server: Server
) -> None:
    """The fan-out's one statement (channels joined with overrides in SQL) returns a
    project's override exactly where ``override_applies`` says it is part of the view."""
    r = await api.post("/projects", json={"organization_id": 1, "name": "Second"})
    second = r.json()["id"]
    org = await create_webhook(api, "http://127.0.0.1:9/org")
    own = await create_webhook(api, "http://127.0.0.1:9/own", project_id=second)
    r = await api.put(
        f"/channels/{org['id']}/overrides/{second}",
        json={"config": {"url": "http://127.0.0.1:9/project"}},
    )
    assert r.status_code == 200, r.text
    engine = create_engine(app_server.settings)
    box = SecretBox("test-secret-key")
    try:
        async with engine.connect() as conn:
            for project_id in (second, None):
                found = await channels_with_overrides(conn, 1, project_id, box)
                assert {ch.id for ch, _ in found} >= {org["id"]}
                for ch, override in found:
                    expected = override_applies(ch.project_id, project_id) and ch.id == org["id"]
                    assert (override is not None) == expected, (ch.id, project_id)
            found = await channels_with_overrides(conn, 1, second, box)
            seen = {ch.id: as_seen_by(ch, ov, second).config["url"] for ch, ov in found}
            assert seen[org["id"]] == "http://127.0.0.1:9/project"
            assert seen[own["id"]] == "http://127.0.0.1:9/own"
    finally:
        await engine.dispose()
