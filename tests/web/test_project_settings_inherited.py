"""A project's settings page shows what the project inherits that it cannot edit there:
the custom headers and template, the events and filters, and the format by its name
(issue 14)."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from api.support import create_webhook
from conftest import Server
from loadbell.web.channel_form import FORMATS
from web.conftest import sign_in_with_token


async def test_inherited_headers_filters_and_format_name(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Headers inherited, then overridden through the API (and kept when the page saves);
    the filters read-only and marked inherited; "Loadmance ...", not `loadmance`."""
    channel = await create_webhook(
        api,
        "http://127.0.0.1:9/hook",
        config={
            "url": "http://127.0.0.1:9/hook",
            "format": "loadmance",
            "headers": {"X-Team": "web"},
        },
        events=["test.started", "test.finished"],
        filters={"test.finished": {"results": ["failed"]}},
    )
    here = f"/integrations/{channel['id']}/projects/1"
    await sign_in_with_token(page, app_server.token, here)

    format_row = page.locator("table.settings tr", has=page.get_by_label("Format"))
    await expect(format_row.locator("td").first).to_have_text(dict(FORMATS)["loadmance"])
    await expect(page.locator("table.settings")).not_to_contain_text("loadmance")

    headers = page.locator("#row-headers")
    await expect(headers).to_contain_text("X-Team")
    await expect(headers.locator("td").last).to_contain_text("inherited")

    filters = page.locator("#inherited-filters")
    await expect(filters).to_contain_text("inherited")
    await expect(filters).to_contain_text("Test started (running)")
    await expect(filters).to_contain_text("Finished tests: results")
    await expect(filters.locator("dd").last).to_have_text("failed")

    r = await api.put(
        f"/channels/{channel['id']}/overrides/1", json={"config": {"headers": {"X-Project": "p"}}}
    )
    assert r.status_code == 200, r.text
    await page.reload()
    await expect(headers.locator("td").nth(1)).to_contain_text("X-Project")
    await expect(headers.locator("td").last).to_contain_text("X-Project")
    await expect(headers.locator("td").last).to_contain_text("overridden here")

    # Saving the page changes what it edits and keeps the project's headers.
    await page.get_by_label("Send messages").select_option("disabled")
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page.locator(".flash")).to_contain_text("saved")
    seen = (await api.get(f"/channels/{channel['id']}/effective", params={"project_id": 1})).json()
    assert seen["enabled"] is False
    assert list(seen["config"]["headers"]) == ["X-Project"]
    assert seen["sources"]["headers"] == "project"


async def test_noise_settings_are_shown_with_where_they_come_from(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """notify_on, quiet hours, throttle and auto-disable in words: the organization's, the
    project's own (set through the API) and the value in effect, marked by its source."""
    channel = await create_webhook(
        api,
        "http://127.0.0.1:9/hook",
        config={"url": "http://127.0.0.1:9/hook", "notify_on": {"mode": "result_change"}},
    )
    quiet = {
        "timezone": "Europe/Berlin",
        "from": "22:00",
        "to": "07:00",
        "days": ["mon", "tue"],
        "action": "hold",
    }
    r = await api.put(
        f"/channels/{channel['id']}/overrides/1",
        json={"config": {"quiet_hours": quiet, "auto_disable": False}},
    )
    assert r.status_code == 200, r.text
    await sign_in_with_token(page, app_server.token, f"/integrations/{channel['id']}/projects/1")

    notify = page.locator("#row-notify_on td")
    await expect(notify.first).to_have_text(
        "when the result changes (the first failure, then the recovery)"
    )
    await expect(notify.last).to_contain_text("when the result changes")
    await expect(notify.last).to_contain_text("inherited")

    quiet_row = page.locator("#row-quiet_hours td")
    await expect(quiet_row.nth(1)).to_contain_text("22:00–07:00 Europe/Berlin, mon, tue")
    await expect(quiet_row.last).to_contain_text("messages held until it ends")
    await expect(quiet_row.last).to_contain_text("overridden here")

    auto = page.locator("#row-auto_disable td")
    await expect(auto.first).to_contain_text("after 20 failed deliveries in a row over 24 h")
    await expect(auto.last).to_contain_text("off")
    await expect(auto.last).to_contain_text("overridden here")
    await expect(page.locator("#row-throttle td").last).to_contain_text("none")
