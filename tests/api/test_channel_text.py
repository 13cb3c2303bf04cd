"""Channel names and webhook headers are one line of text: control characters and blank
names are refused with a 422 that names the field, and nothing is stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.support import assert_error, create_webhook
from conftest import webhook_channel
from loadbell.channels.webhook import MAX_HEADER_VALUE

URL = "http://127.0.0.1:9/hook"


async def _names(api: httpx.AsyncClient) -> list[str]:
    r = await api.get("/channels")
    assert r.status_code == 200, r.text
    return [c["name"] for c in r.json()["items"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # NUL used to reach PostgreSQL, which refuses it in text (a 500).
        ({"name": "ci\x00hook"}, "name"),
        ({"name": "ci\thook"}, "name"),
        ({"name": "ci\nhook"}, "name"),
        ({"name": "\x1b[31mred"}, "name"),
        # Spaces only: it used to be stored as an empty name.
        ({"name": "   "}, "name"),
        # A NUL in a header value used to be stored and then broke every delivery.
        ({"config": {"url": URL, "headers": {"X-Foo": "a\x00b"}}}, "config.headers.X-Foo"),
        ({"config": {"url": URL, "headers": {"X-Foo": "a\tb"}}}, "config.headers.X-Foo"),
        ({"config": {"url": URL, "headers": {"X-Foo": "a\x7fb"}}}, "config.headers.X-Foo"),
        ({"config": {"url": URL, "headers": {"X-Foo": "line\n"}}}, "config.headers.X-Foo"),
        ({"config": {"url": URL, "headers": {"X\x00Foo": "v"}}}, "config.headers.X\x00Foo"),
    ],
)
async def test_create_refuses_control_characters(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    """Creating a channel with a control character (or a blank name) is a 422 naming the
    field, and no channel is stored."""
    r = await api.post("/channels", json=webhook_channel(URL, **change))
    body = assert_error(r, 422, field)
    assert "control character" in body["message"] or "only spaces" in body["message"]
    assert await _names(api) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "bad\x00name"}, "name"),
        ({"name": " \t "}, "name"),
        ({"config": {"headers": {"X-Foo": "a\x00b"}}}, "config.headers.X-Foo"),
    ],
)
async def test_update_refuses_control_characters(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    """PATCH with a control character is a 422 naming the field, and the channel keeps
    its name and headers."""
    channel = await create_webhook(
        api, URL, name="ci hook", config={"url": URL, "headers": {"X-Ok": "1"}}
    )
    r = await api.patch(f"/channels/{channel['id']}", json=change)
    assert_error(r, 422, field)
    r = await api.get(f"/channels/{channel['id']}")
    assert r.json()["name"] == "ci hook"
    assert list(r.json()["config"]["headers"]) == ["X-Ok"]


async def test_override_refuses_a_nul_in_a_header_value(api: httpx.AsyncClient) -> None:
    """A project override whose header value holds a NUL is a 422 naming the header, and
    no override is stored."""
    channel = await create_webhook(api, URL)
    r = await api.put(
        f"/channels/{channel['id']}/overrides/1",
        json={"config": {"headers": {"X-Foo": "a\x00b"}}},
    )
    assert_error(r, 422, "config.headers.X-Foo")
    r = await api.get(f"/channels/{channel['id']}/effective", params={"project_id": 1})
    assert r.status_code == 200, r.text
    assert r.json()["override"] is None


async def test_a_name_is_stored_trimmed(api: httpx.AsyncClient) -> None:
    """Spaces around a name are dropped, on create and on update."""
    channel = await create_webhook(api, URL, name="  ci hook  ")
    assert channel["name"] == "ci hook"
    r = await api.patch(f"/channels/{channel['id']}", json={"name": " nightly "})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "nightly"


@pytest.mark.parametrize("size", [MAX_HEADER_VALUE + 1, 200_000])
async def test_a_header_value_longer_than_the_limit_is_refused(
    api: httpx.AsyncClient, size: int
) -> None:
    """A custom header value over 4,096 characters (a 200,000-character one was once stored)
    is a 422 naming the header, on create, update and a project override; nothing is
    stored. A value of exactly the limit is taken."""
    config = {"url": URL, "headers": {"X-Big": "v" * size}}
    body = assert_error(
        await api.post("/channels", json=webhook_channel(URL, config=config)),
        422,
        "config.headers.X-Big",
    )
    assert "at most 4,096" in body["message"]
    assert await _names(api) == []

    channel = await create_webhook(api, URL, config={"url": URL, "headers": {"X-Ok": "1"}})
    r = await api.patch(f"/channels/{channel['id']}", json={"config": config})
    assert_error(r, 422, "config.headers.X-Big")
    r = await api.put(f"/channels/{channel['id']}/overrides/1", json={"config": config})
    assert_error(r, 422, "config.headers.X-Big")
    r = await api.get(f"/channels/{channel['id']}/effective", params={"project_id": 1})
    assert r.json()["override"] is None

    at_limit = {"headers": {"X-Ok": "v" * MAX_HEADER_VALUE}}
    r = await api.patch(f"/channels/{channel['id']}", json={"config": at_limit})
    assert r.status_code == 200, r.text
