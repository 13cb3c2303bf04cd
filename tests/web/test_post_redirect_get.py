"""Every POST that changes something ends in a redirect (post/redirect/get): reloading the
page it lands on changes nothing. A secret shown once is shown on that page, and only
there (issue 14, item 4)."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token


async def test_reloading_after_create_token_creates_no_second_token(
    page: Page, app_server: Server
) -> None:
    await sign_in_with_token(page, app_server.token, "/orgs/1/members")
    form = page.locator("#token-form")
    await form.get_by_label("Name").fill("Reloaded CI")
    await form.get_by_role("button", name="Create token").click()
    token = (await page.locator("#token-value").inner_text()).strip()
    assert token
    await expect(page).to_have_url(re.compile(r"/orgs/1/members$"))

    await page.reload()
    await expect(page.locator("#token-value")).to_have_count(0)  # shown once only
    assert token not in await page.content()
    rows = page.locator("table.tokens tr", has_text="Reloaded CI")
    await expect(rows).to_have_count(1)


async def test_reloading_after_invite_keeps_nothing_and_loses_nothing(
    page: Page, app_server: Server
) -> None:
    """The password is shown on the page the redirect lands on; reloading neither invites
    again ("already a member") nor shows the password a second time."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/members")
    form = page.locator("#invite-form")
    await form.get_by_label("Name").fill("Rhea Reload")
    await form.get_by_label("Email").fill("rhea@example.com")
    await form.get_by_role("button", name="Invite").click()
    password = (await page.locator("#initial-password").inner_text()).strip()
    assert len(password) >= 12
    await expect(page).to_have_url(re.compile(r"/orgs/1/members$"))

    await page.reload()
    await expect(page.locator("#initial-password")).to_have_count(0)
    assert "already" not in (await page.content()).lower()
    await expect(page.locator("table.members tr", has_text="Rhea Reload")).to_have_count(1)


async def test_signing_secret_is_shown_after_a_redirect(
    page: Page, app_server: Server, receiver: RecordingReceiver
) -> None:
    """Saving a signed webhook and rotating its secret both redirect to the channel's page,
    which shows the new secret once."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.get_by_label("URL").fill(f"{receiver.url}/hook")
    await page.get_by_label("Sign requests").check()
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page).to_have_url(re.compile(r"/integrations/\d+$"))
    first = (await page.locator("#new-secret").inner_text()).strip()
    assert first.startswith("whsec_")

    await page.get_by_role("button", name="Rotate secret").click()
    await expect(page).to_have_url(re.compile(r"/integrations/\d+$"))
    second = (await page.locator("#new-secret").inner_text()).strip()
    assert second.startswith("whsec_") and second != first

    await page.reload()
    await expect(page.locator("#new-secret")).to_have_count(0)
    assert second not in await page.content()
