"""API tokens are listed apart from people on the Members page (issue 14)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from conftest import Server
from web.conftest import sign_in_with_token


async def test_tokens_are_listed_apart_from_people(page: Page, app_server: Server) -> None:
    """A new token shows under "Tokens" as a service user with its role; the People table
    gains no row and no role selector for it."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/members")
    people = page.locator("table.members tbody tr")
    before = await people.count()
    selectors = await page.locator("table.members select").count()

    form = page.locator("#token-form")
    await form.get_by_label("Name").fill("Nightly CI")
    await form.get_by_label("Role").select_option("admin")
    await form.get_by_role("button", name="Create token").click()
    await expect(page.locator("#token-value")).to_be_visible()

    await expect(people).to_have_count(before)
    await expect(page.locator("table.members select")).to_have_count(selectors)
    await expect(page.locator("table.members")).not_to_contain_text("Nightly CI")
    await expect(page.get_by_role("heading", name="Tokens")).to_be_visible()
    row = page.locator("#tokens table.tokens tr", has_text="Nightly CI")
    await expect(row).to_contain_text("service user")
    await expect(row).to_contain_text("admin")
    await expect(row.get_by_role("button", name="Revoke")).to_be_visible()
