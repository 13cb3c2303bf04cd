"""The preview endpoints: any event, any kind, rendered from sample data, nothing sent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from conftest import Server
from loadbell.channels.registry import KINDS, KindName
from loadbell.domain.events import EventType
from loadbell.domain.roles import Role
from loadbell.formats import samples
from loadbell.services.errors import Invalid
from loadbell.services.previews import render_preview
from loadbell.store import accounts
from loadbell.store.db import create_engine
from loadbell.testing import RecordingReceiver

SECRET = "whsec_" + "bm" * 16  # base64 of 24 bytes

# A config for every registered kind, as a form would send it (keys of issue 3's table).
KIND_CONFIGS: dict[KindName, dict[str, Any]] = {
    KindName.WEBHOOK: {"url": "http://127.0.0.1:9/hook/token", "format": "loadmance"},
    KindName.SLACK: {"webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX"},
    KindName.SLACK_APP: {"targets": "#load-tests"},
    KindName.HIPCHAT: {"url": "https://hipchat.example.com/v2/room/1/notification?auth_token=t"},
    KindName.TEAMS: {"url": "https://example.logic.azure.com/workflows/abc/triggers/x?sig=s"},
    KindName.DISCORD: {"url": "https://discord.com/api/webhooks/123/tok"},
    KindName.MATTERMOST: {"url": "https://chat.example.com/hooks/abc"},
    KindName.EMAIL: {
        "to": ["ops@example.com"],
        "from": "loadbell@example.com",
        "smtp_host": "smtp.example.com",
        "smtp_password": "pw",
        "smtp_username": "u",
    },
    KindName.APPRISE: {"url": "json://127.0.0.1:9/apprise/token"},
}
# Kinds that cannot render without state created elsewhere (the Slack app's install).
NEEDS_SETUP = {KindName.SLACK_APP}


async def _webhook(api: httpx.AsyncClient, config: dict[str, Any]) -> int:
    r = await api.post(
        "/channels",
        json={"organization_id": 1, "kind": "webhook", "name": "hook", "config": config},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def test_saved_channel_preview_renders_and_sends_nothing(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """POST and GET render the sample failed run for the channel; secrets are masked and no
    request reaches the receiver."""
    channel_id = await _webhook(
        api,
        {
            "url": f"{receiver.url}/hook/secret-path",
            "format": "loadmance",
            "headers": {"X-Api-Key": "k"},
            "signing_secrets": [SECRET],
        },
    )
    r = await api.post(f"/channels/{channel_id}/preview", json={"event": "test.finished"})
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["url"] == f"{receiver.url}/****"
    assert preview["headers"]["X-Api-Key"] == "****"
    assert preview["headers"]["webhook-signature"] == "****"
    assert preview["headers"]["Content-Type"] == "application/json"
    body = json.loads(preview["body"])
    assert body["eventType"] == "TEST_FAILED"
    assert body["metadata"]["testRunId"] == "4217"
    assert body["metadata"]["failReportLink"] == "http://loadbell.test/runs/4217"
    # The real organization and project names, where the channel has them.
    r = await api.get(
        f"/channels/{channel_id}/preview", params={"event": "project.updated", "project_id": 1}
    )
    assert r.status_code == 200, r.text
    project = (await api.get("/projects/1")).json()
    assert json.loads(r.json()["body"])["message"].startswith(f"Project '{project['name']}'")
    assert receiver.requests == []


async def test_members_may_preview(app_server: Server) -> None:
    """Previewing only reads: a member's token may do it."""
    async with app_server.client() as api:
        channel_id = await _webhook(api, {"url": "http://127.0.0.1:9/", "format": "loadimpact"})
    engine = create_engine(app_server.settings)
    async with engine.begin() as conn:
        token = await accounts.service_token(conn, 1, Role.MEMBER, "member bot")
    await engine.dispose()
    async with app_server.client(token) as member:
        r = await member.post(f"/channels/{channel_id}/preview", json={})
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["body"])["event"] == "test.finished"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"event": "test.exploded"}, 422, "event"),  # not an event
        ({"event": "project.created"}, 422, "event"),  # loadimpact cannot express it
        ({"event": "test.finished", "project_id": 999}, 404, None),  # unknown project
    ],
)
async def test_saved_preview_errors(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, field: str | None
) -> None:
    """Bad events and projects are refused with the usual error shape."""
    channel_id = await _webhook(api, {"url": "http://127.0.0.1:9/", "format": "loadimpact"})
    r = await api.post(f"/channels/{channel_id}/preview", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field


def test_every_registered_kind_has_a_case() -> None:
    """Adding a kind to the registry means adding its preview case here."""
    assert set(KIND_CONFIGS) == set(KINDS)


@pytest.mark.parametrize("kind", list(KIND_CONFIGS), ids=lambda k: k.value)
def test_every_kind_renders_a_masked_preview(kind: KindName) -> None:
    """render_preview works for every kind: HTTP kinds through render, email and Apprise
    through preview; secrets in the URL and headers are masked."""
    impl = KINDS[kind]
    config = {**impl.defaults, **impl.validate(KIND_CONFIGS[kind])}
    message = samples.sample_message(EventType.TEST_FINISHED)
    if kind in NEEDS_SETUP:
        with pytest.raises(Invalid):
            render_preview(impl, config, message)
        return
    preview = render_preview(impl, config, message)
    assert preview["body"]
    assert "token" not in preview["url"] and "secret" not in preview["url"]
    assert "pw" not in json.dumps(preview)


async def test_unsaved_config_preview_through_the_api(api: httpx.AsyncClient) -> None:
    """POST /channels/preview answers for every kind (422 with a message for the Slack app,
    which needs its install first)."""
    for kind, config in KIND_CONFIGS.items():
        r = await api.post(
            "/channels/preview",
            json={"kind": kind.value, "config": config, "event": "test.finished"},
        )
        assert r.status_code == (422 if kind in NEEDS_SETUP else 200), (kind, r.text)
        assert r.json()["message" if kind in NEEDS_SETUP else "body"]


async def test_unsaved_template_preview_names_the_failing_line(api: httpx.AsyncClient) -> None:
    """A template that renders test.finished but not project.created shows the line in 422."""
    config = {
        "url": "http://127.0.0.1:9/",
        "format": "template",
        "template": '{\n"r": {{ run.id }}}',
    }
    ok = await api.post("/channels/preview", json={"kind": "webhook", "config": config})
    assert ok.status_code == 200, ok.text
    assert json.loads(ok.json()["body"]) == {"r": 4217}
    r = await api.post(
        "/channels/preview",
        json={"kind": "webhook", "config": config, "event": EventType.PROJECT_CREATED.value},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "config.template"
    assert r.json()["message"].startswith("config.template: line 2: ")


async def test_unsaved_config_is_validated(api: httpx.AsyncClient) -> None:
    """The config is checked as on save: a missing URL is a 422 on config.url."""
    r = await api.post("/channels/preview", json={"kind": "webhook", "config": {}})
    assert r.status_code == 422
    assert r.json()["field"] == "config.url"


async def test_email_preview_is_the_mime_message(api: httpx.AsyncClient) -> None:
    """The email kind previews the HTML + text message it would hand to the SMTP server."""
    r = await api.post(
        "/channels/preview",
        json={"kind": "email", "config": KIND_CONFIGS[KindName.EMAIL], "event": "test.finished"},
    )
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["method"] == "SMTP"
    assert preview["url"] == "smtp://smtp.example.com:587"
    assert preview["headers"]["To"] == "ops@example.com"
    assert "text/plain" in preview["body"] and "text/html" in preview["body"]
