"""One delivery's page: each attempt's request (URL, headers, the body sent) and response
(status, headers, body excerpt, time) with secrets masked and a copy button per block
that the keyboard reaches; a deleted channel's delivery says so and offers no Redeliver."""

from __future__ import annotations

import httpx
from aiohttp import web
from playwright.async_api import Page, expect

from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from conftest import Server
from loadbell.testing import Received, RecordingReceiver
from web.conftest import sign_in_with_token

CUSTOM = "custom-value-1234"
URL_TOKEN = "T000/B000/XXXXsecretpath"


def answer(r: Received) -> web.Response:
    return web.Response(
        status=202,
        text="accepted by the receiver",
        headers={"Set-Cookie": "session=abcdef123456", "X-Trace": "t-42"},
    )


async def test_each_attempt_shows_its_request_and_response_with_copy_buttons(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """From the log to the delivery's page: the masked URL and headers, the body the
    receiver got, the response's status, headers and body; Tab reaches a Copy button and
    Enter copies the body."""
    async with RecordingReceiver(handler=answer) as rx:
        url = f"{rx.url}/services/{URL_TOKEN}"
        await create_webhook(
            api, url, name="Hooked", config={"url": url, "headers": {"X-Api-Secret": CUSTOM}}
        )
        run = await new_run(api)
        await set_status(api, run["id"], 2)
        [delivery] = await wait_deliveries(api, all_done, run_id=run["id"])
        [got] = rx.requests
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await sign_in_with_token(page, app_server.token, "/orgs/1/deliveries")
    item = page.locator(f"#delivery-{delivery['id']}")
    await item.locator(":scope > details > summary").click()
    await item.get_by_role("link", name="Request and response of each attempt").click()
    await page.wait_for_url(f"**/deliveries/{delivery['id']}")

    key = "a1-1"
    await expect(page.locator(f"#{key}-url")).to_have_text(f"POST {rx.url}/****")
    headers = page.locator(f"#{key}-request-headers")
    await expect(headers).to_contain_text("X-Api-Secret: ****")
    await expect(headers).to_contain_text("Content-Type: application/json")
    body = page.locator(f"#{key}-request-body")
    assert await body.text_content() == got.body.decode()
    await expect(page.locator(".response-status")).to_contain_text("Status 202")
    back = page.locator(f"#{key}-response-headers")
    await expect(back).to_contain_text("Set-Cookie: ****")
    await expect(back).to_contain_text("X-Trace: t-42")
    await expect(page.locator(f"#{key}-response-body")).to_have_text("accepted by the receiver")
    content = await page.content()
    for secret in (CUSTOM, URL_TOKEN, "abcdef123456"):
        assert secret not in content

    # The keyboard reaches the body's Copy button (after the body's heading) and Enter
    # presses it.
    copy = page.locator(f"button[data-copy='{key}-request-body']")
    await expect(copy).to_be_visible()
    await page.locator(f"#{key}-request-headers").focus()
    for _ in range(3):
        await page.keyboard.press("Tab")
        if await copy.evaluate("el => el === document.activeElement"):
            break
    await expect(copy).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert await page.evaluate("navigator.clipboard.readText()") == got.body.decode()


async def test_a_deleted_channels_delivery_says_so_and_offers_no_redeliver(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """A failed delivery whose channel was then deleted is marked in the log and on its
    page, with no Redeliver button on either."""
    async with RecordingReceiver(status=500) as rx:
        channel = await create_webhook(
            api, f"{rx.url}/hook", name="Doomed", retry={"max_attempts": 1}
        )
        run = await new_run(api)
        await set_status(api, run["id"], 2)
        [delivery] = await wait_deliveries(api, all_done, run_id=run["id"])
    await sign_in_with_token(page, app_server.token, "/orgs/1/deliveries")
    item = page.locator(f"#delivery-{delivery['id']}")
    await expect(item.get_by_role("button", name="Redeliver")).to_have_count(1)

    assert (await api.delete(f"/channels/{channel['id']}")).status_code == 204
    await page.reload()
    await expect(item.locator(".channel-deleted")).to_have_text("integration deleted")
    await expect(item.get_by_role("button", name="Redeliver")).to_have_count(0)
    await item.locator(":scope > details > summary").click()
    await expect(item.locator(".channel-deleted-note")).to_contain_text("cannot be sent again")

    await page.goto(f"/deliveries/{delivery['id']}")
    await expect(page.locator("#channel-deleted")).to_contain_text(
        "Its integration was deleted: this delivery cannot be sent again"
    )
    await expect(page.get_by_role("button", name="Redeliver")).to_have_count(0)
