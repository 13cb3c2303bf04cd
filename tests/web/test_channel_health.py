"""A channel disabled for failing, as the web app shows it: a banner on the Integrations
page and on the channel's page, a red health badge in the list, and its skipped
deliveries with their reason in the delivery log."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token


async def test_a_disabled_channel_has_a_banner_and_a_red_badge(
    page: Page, api: httpx.AsyncClient, app_server: Server, receiver: RecordingReceiver
) -> None:
    """One failed delivery with after_failures 1 and after_hours 0 disables the channel;
    the pages say so, and the log shows the next event's delivery skipped with why."""
    receiver.status = 500
    dead = await create_webhook(
        api,
        f"{receiver.url}/dead",
        name="Dead hook",
        retry={"max_attempts": 1},
        config={
            "url": f"{receiver.url}/dead",
            "auto_disable": {"after_failures": 1, "after_hours": 0},
        },
    )
    await create_webhook(api, f"{receiver.url}/other", name="Other hook", enabled=False)
    for _ in range(2):  # the first fails and disables, the second is skipped
        run = await new_run(api)
        await set_status(api, run["id"], 2)
        await wait_deliveries(api, all_done, run_id=run["id"], channel_id=dead["id"])

    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations")
    banner = page.locator("#disabled-banner")
    await expect(banner).to_contain_text("1 integration stopped sending")
    await expect(banner).to_contain_text("Dead hook")
    hooks = page.locator("#kind-webhook li")
    await expect(hooks.filter(has_text="Dead hook").locator(".health-disabled")).to_have_text(
        "Disabled for failing"
    )
    await expect(hooks.filter(has_text="Other hook").locator(".health-disabled")).to_have_count(0)

    await page.goto(f"/integrations/{dead['id']}")
    await expect(page.locator("#disabled-banner")).to_contain_text(
        "disabled after 1 consecutive failed deliveries"
    )

    await page.goto(f"/orgs/1/deliveries?channel_id={dead['id']}&status=skipped")
    skipped = page.locator(".delivery-skipped")
    await expect(skipped).to_have_count(1)
    await expect(skipped.locator(".skip-reason")).to_contain_text(
        "the channel was disabled for failing"
    )
