"""Enter in a text field of the setup form saves, as "Save Changes" does; it does not run
Preview, the form's first visible submit button (issue 14, item 2)."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect

from api.support import create_webhook
from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token


async def test_enter_in_a_new_form_creates_the_channel(
    page: Page, app_server: Server, receiver: RecordingReceiver, api: httpx.AsyncClient
) -> None:
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.get_by_label("URL").fill(f"{receiver.url}/hook")
    await page.get_by_label("URL").press("Enter")
    await expect(page).to_have_url(re.compile(r"/integrations/\d+$"))
    await expect(page.locator(".flash")).to_contain_text("Changes saved")
    assert (await api.get("/channels")).json()["items"]


async def test_enter_in_a_text_field_saves_the_channel(
    page: Page, app_server: Server, receiver: RecordingReceiver, api: httpx.AsyncClient
) -> None:
    channel = await create_webhook(api, f"{receiver.url}/hook")
    await sign_in_with_token(page, app_server.token, f"/integrations/{channel['id']}")
    await page.get_by_label("Name", exact=True).fill("Renamed with Enter")
    await page.get_by_label("Name", exact=True).press("Enter")
    await expect(page.locator(".flash")).to_contain_text("Changes saved")
    saved = (await api.get(f"/channels/{channel['id']}")).json()
    assert saved["name"] == "Renamed with Enter"
    assert receiver.requests == []  # saved, not tested
