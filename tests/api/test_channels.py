"""Channels: the README example, masking, secrets at rest, subscriptions and filters."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from api.support import (
    assert_error,
    create_webhook,
    list_deliveries,
    new_run,
    set_status,
    unusable_urls,
)
from conftest import Server, webhook_channel
from loadbell.security.secretbox import SecretBox
from loadbell.store.db import create_engine
from loadbell.store.tables import channels
from loadbell.testing import RecordingReceiver

README_FILTERS = {
    "test.started": {"triggers": ["scheduled"]},
    "test.finished": {"statuses": [3, 4, 5, 6, 7, 8, 9], "results": ["failed"]},
}


def readme_channel(url: str) -> dict[str, Any]:
    """The channel of the README's first example, exactly as written there."""
    return {
        "organization_id": 1,
        "project_id": None,
        "kind": "webhook",
        "name": "ci hook",
        "config": {"url": url, "format": "loadimpact", "headers": {"X-Token": "s3cret"}},
        "events": ["test.started", "test.finished"],
        "filters": README_FILTERS,
    }


async def _channel_row(server: Server, channel_id: int) -> Any:
    engine = create_engine(server.settings)
    try:
        async with engine.connect() as conn:
            return (
                await conn.execute(sa.select(channels).where(channels.c.id == channel_id))
            ).one()
    finally:
        await engine.dispose()


async def test_readme_channel_is_created_masked_and_encrypted(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """The README's POST /channels answers 201 with secrets masked, and the database row
    holds the URL and header value only encrypted."""
    url = f"{receiver.url}/hook/T0KEN"
    r = await api.post("/channels", json=readme_channel(url))
    assert r.status_code == 201, r.text
    body = r.json()
    assert isinstance(body["id"], int)
    assert body["kind"] == "webhook" and body["name"] == "ci hook"
    assert body["organization_id"] == 1 and body["project_id"] is None
    assert body["enabled"] is True
    assert body["config"] == {
        "url": f"{receiver.url}/****",
        "format": "loadimpact",
        "headers": {"X-Token": "****"},
        "auto_disable": {"after_failures": 20, "after_hours": 24},  # every kind's default
        # noise control's defaults: every run, no quiet hours, no throttle
        "notify_on": {"mode": "every_run"},
        "quiet_hours": None,
        "throttle": {},
    }
    assert body["events"] == ["test.started", "test.finished"]
    assert body["filters"] == README_FILTERS
    assert "s3cret" not in r.text and "T0KEN" not in r.text
    got = (await api.get(f"/channels/{body['id']}")).text
    assert "s3cret" not in got and "T0KEN" not in got

    row = await _channel_row(app_server, body["id"])
    stored = repr(tuple(row))
    assert "s3cret" not in stored and "T0KEN" not in stored and "/hook" not in stored
    assert "url" not in row.config and "headers" not in row.config
    opened = SecretBox("test-secret-key").open(row.secrets)
    assert opened == {"url": url, "headers": {"X-Token": "s3cret"}}


async def test_default_events_are_all_the_format_supports(api: httpx.AsyncClient) -> None:
    """Without `events` a channel gets every event its format can express."""
    for fmt in ("loadimpact", "loadimpact-legacy"):
        body = webhook_channel("http://127.0.0.1:9/hook")
        body["config"] = {"url": "http://127.0.0.1:9/hook", "format": fmt}
        r = await api.post("/channels", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["events"] == ["test.started", "test.finished"]


# Slack's defaults: the run's lifecycle and channel.disabled; not intermediate reports,
# the report's arrival, or load test and project changes (issue 14).
SLACK_DEFAULT_EVENTS = [
    "test.started",
    "test.finished",
    "test.threshold_failed",
    "test.regressed",
    "channel.disabled",
]


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("slack", {"webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX"}),
        ("slack_app", {}),
    ],
)
async def test_slack_kinds_default_to_the_run_lifecycle(
    api: httpx.AsyncClient, kind: str, config: dict[str, object]
) -> None:
    """A Slack channel created without `events` subscribes to the run's lifecycle only;
    one that names events gets them, intermediate reports included."""
    body = {"organization_id": 1, "kind": kind, "name": kind, "config": config}
    r = await api.post("/channels", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["events"] == SLACK_DEFAULT_EVENTS
    r = await api.post("/channels", json={**body, "events": ["test.report_intermediate"]})
    assert r.status_code == 201, r.text
    assert r.json()["events"] == ["test.report_intermediate"]


async def test_other_chat_kinds_still_default_to_every_event(api: httpx.AsyncClient) -> None:
    """Teams (and the other kinds without a choice of their own) subscribe to all events."""
    body = {
        "organization_id": 1,
        "kind": "teams",
        "name": "teams",
        "config": {"url": "https://example.com/workflows/hook"},
    }
    r = await api.post("/channels", json=body)
    assert r.status_code == 201, r.text
    assert "test.report_intermediate" in r.json()["events"]
    assert "project.created" in r.json()["events"]


async def test_bad_channels_are_422_naming_the_field(api: httpx.AsyncClient) -> None:
    """Events the format cannot express, filters on unsubscribed events, bad filter values
    and bad config are refused with the field named; nothing is stored."""
    url = "http://127.0.0.1:9/hook"
    for event in (
        "test.starting",  # XTC's Start: seed 000 has no body for it
        "project.created",  # seed 004 only
        "load_test.created",
        "test.report_available",
    ):
        body = webhook_channel(url, events=["test.started", event])
        err = assert_error(await api.post("/channels", json=body), 422, "events[1]")
        assert f"'{event}'" in err["message"], err
        assert "loadimpact" in err["message"] and "test.finished" in err["message"]
    cases: list[tuple[dict[str, Any], int, str | None, str]] = [
        # not an event at all
        (webhook_channel(url, events=["test.exploded"]), 422, "events[0]", "unknown event"),
        # the test hook is sent on request, never subscribed to
        (
            webhook_channel(url, events=["test.notification_channel"]),
            422,
            "events[0]",
            "POST /channels/{id}/test",
        ),
        # a filter for an event the channel does not subscribe to
        (
            webhook_channel(url, events=["test.started"], filters=README_FILTERS),
            422,
            "filters.test.finished",
            "not subscribed",
        ),
        # an unknown trigger
        (
            webhook_channel(url, filters={"test.started": {"triggers": ["cron"]}}),
            422,
            "filters.test.started.triggers",
            "'manual' or 'scheduled'",
        ),
        # a status that does not finish a run
        (
            webhook_channel(url, filters={"test.finished": {"statuses": [2]}}),
            422,
            "filters.test.finished.statuses",
            "finishing status",
        ),
        # no URL
        ({**webhook_channel(url), "config": {"format": "loadimpact"}}, 422, "config.url", "URL"),
        # not an http(s) URL
        (
            {**webhook_channel(url), "config": {"url": "ftp://x.example/"}},
            422,
            "config.url",
            "http",
        ),
        # an unknown wire format
        (
            {**webhook_channel(url), "config": {"url": url, "format": "xml"}},
            422,
            "config.format",
            "loadimpact-legacy",
        ),
        # a header the format owns
        (
            {**webhook_channel(url), "config": {"url": url, "headers": {"X-LoadImpact-ID": "1"}}},
            422,
            "config.headers.X-LoadImpact-ID",
            "set by loadbell",
        ),
        # an unknown kind
        ({**webhook_channel(url), "kind": "pager"}, 422, "kind", "webhook"),
        # a bad retry override
        (webhook_channel(url, retry={"max_attempts": 0}), 422, "retry.max_attempts", "1 to 20"),
        # a project that does not exist
        ({**webhook_channel(url), "project_id": 999}, 404, None, "project 999"),
    ]
    for body, status, field, phrase in cases:
        err = assert_error(await api.post("/channels", json=body), status, field)
        assert phrase in err["message"], err
    assert (await api.get("/channels")).json()["items"] == []


async def test_patch_with_masked_values_keeps_the_secrets(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Sending back the masked config from GET keeps the real URL and header values."""
    channel = await create_webhook(
        api,
        f"{receiver.url}/hook/T0KEN",
        config={
            "url": f"{receiver.url}/hook/T0KEN",
            "format": "loadimpact",
            "headers": {"X-Token": "s3cret", "X-Team": "perf"},
        },
    )
    shown = (await api.get(f"/channels/{channel['id']}")).json()
    config = dict(shown["config"])
    config["headers"] = {**config["headers"], "X-Team": "load", "X-New": "added"}
    r = await api.patch(f"/channels/{channel['id']}", json={"name": "renamed", "config": config})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["url"] == shown["config"]["url"]

    r = await api.post(f"/channels/{channel['id']}/test")
    assert r.status_code == 200 and r.json()["outcome"] == "delivered", r.text
    [got] = receiver.requests
    assert got.path == "/hook/T0KEN"
    assert got.header("X-Token") == "s3cret"  # kept
    assert got.header("X-Team") == "load"  # changed
    assert got.header("X-New") == "added"  # added

    r = await api.patch(
        f"/channels/{channel['id']}", json={"config": {"url": f"{receiver.url}/moved"}}
    )
    assert r.status_code == 200, r.text
    await api.post(f"/channels/{channel['id']}/test")
    assert receiver.requests[-1].path == "/moved"
    assert receiver.requests[-1].header("X-Token") == "s3cret"  # headers untouched


async def test_urls_whose_host_is_no_address_or_name_are_refused(
    api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """POST and PATCH of a URL whose host the sender cannot use answer 422 on the URL's
    field with the form to write instead, and store nothing."""
    kept = f"{receiver.url}/kept"
    channel = await create_webhook(api, kept)
    for url, says in unusable_urls(receiver.port):
        err = assert_error(
            await api.post("/channels", json=webhook_channel(url)), 422, "config.url"
        )
        assert says in err["message"] and "write" in err["message"], err
        r = await api.patch(f"/channels/{channel['id']}", json={"config": {"url": url}})
        err = assert_error(r, 422, "config.url")
        assert says in err["message"], err
    slack = {
        **webhook_channel(kept),
        "kind": "slack",
        "config": {"webhook_url": f"http://127.1:{receiver.port}/services/T0/B0/X"},
    }
    err = assert_error(await api.post("/channels", json=slack), 422, "config.webhook_url")
    assert "write 127.0.0.1 instead" in err["message"], err

    assert [c["id"] for c in (await api.get("/channels")).json()["items"]] == [channel["id"]]
    row = await _channel_row(app_server, channel["id"])
    assert SecretBox("test-secret-key").open(row.secrets)["url"] == kept


async def test_canonical_addresses_and_dns_names_are_saved(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Dotted quads, bracketed IPv6 literals and DNS names, single labels included, are
    accepted as URL hosts."""
    for url in (
        f"http://127.0.0.1:{receiver.port}/a",
        f"http://[::1]:{receiver.port}/b",
        f"http://localhost:{receiver.port}/c",
        "http://receiver:8080/d",
        "https://hooks.example.com/e",
    ):
        await create_webhook(api, url)
    assert len((await api.get("/channels")).json()["items"]) == 5


async def test_filters_decide_which_deliveries_exist(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """With the README filters, manual starts and passed finishes are not delivered; scheduled
    starts and failed finishes are."""
    channel = (await api.post("/channels", json=readme_channel(f"{receiver.url}/hook"))).json()

    manual = await new_run(api, trigger="manual")
    await set_status(api, manual["id"], 2)  # blocked: started, but manual
    await set_status(api, manual["id"], 3, result="passed")  # blocked: passed
    assert await list_deliveries(api, run_id=manual["id"]) == []

    scheduled = await new_run(api, trigger="scheduled")
    await set_status(api, scheduled["id"], 2)  # delivered: scheduled start
    await set_status(api, scheduled["id"], 3)  # blocked: Finished defaults to passed
    aborted = await new_run(api, trigger="manual")
    await set_status(api, aborted["id"], 5)  # delivered: aborted runs fail

    got = await receiver.wait_for(2)
    await asyncio.sleep(0.3)  # nothing else may arrive
    assert [(g.json()["event"], g.json()["load_test_run_id"]) for g in receiver.requests] == [
        ("test.started", scheduled["id"]),
        ("test.finished", aborted["id"]),
    ]
    assert got[1].json()["status"] == 5
    kinds = [d["event_type"] for d in await list_deliveries(api, channel_id=channel["id"])]
    assert sorted(kinds) == ["test.finished", "test.started"]


async def test_disabled_and_deleted_channels_get_nothing(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Switching a channel off stops new deliveries; deleting it hides it and stops them too."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    r = await api.patch(f"/channels/{channel['id']}", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    assert await list_deliveries(api, run_id=run["id"]) == []
    r = await api.delete(f"/channels/{channel['id']}")
    assert r.status_code == 204
    assert_error(await api.get(f"/channels/{channel['id']}"), 404)
    assert (await api.get("/channels")).json()["items"] == []
    await set_status(api, run["id"], 3)
    assert await list_deliveries(api, run_id=run["id"]) == []
    assert receiver.requests == []
