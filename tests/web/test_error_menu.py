"""403 and 404 pages keep the menu for a signed-in person; refusals such as "last owner"
look like refusals, not news (issue 14)."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from conftest import Server
from web.conftest import sign_in_with_token


async def test_error_pages_keep_the_menu(page: Page, app_server: Server) -> None:
    """A missing run (404) and a refused form (403) show the left menu and the switcher;
    a visitor who is not signed in gets the bare page."""
    await sign_in_with_token(page, app_server.token)
    answer = await page.goto("/runs/987654")
    assert answer is not None and answer.status == 404
    menu = page.get_by_role("navigation", name="Main")
    await expect(menu.get_by_role("link", name="Integrations")).to_be_visible()
    await expect(menu.get_by_role("link", name="Members")).to_have_attribute(
        "href", "/orgs/1/members"
    )
    await expect(page.locator(".switcher")).to_be_visible()
    await expect(page.locator(".error-text")).to_contain_text("run 987654")

    answer = await page.goto("/no/such/page")
    assert answer is not None and answer.status == 404
    await expect(menu.get_by_role("link", name="Runs")).to_be_visible()

    # A form without its CSRF token: 403, still inside the app.
    refused = await page.request.post("/orgs/1/members/invite", form={"name": "x"})
    assert refused.status == 403
    html = await refused.text()
    assert 'aria-label="Main"' in html and "CSRF" in html

    async with httpx.AsyncClient(base_url=app_server.url, timeout=30) as visitor:
        bare = await visitor.get("/no/such/page")
    assert bare.status_code == 404
    assert 'aria-label="Main"' not in bare.text


async def test_last_owner_refusal_is_shown_as_a_problem(page: Page, app_server: Server) -> None:
    """Demoting the last owner is refused in the error style (role=alert), with no blue
    info message beside it."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/members")
    owner_row = page.locator("table.members tr", has_text="(you)")
    await owner_row.get_by_role("combobox").select_option("member")
    await owner_row.get_by_role("button", name="Change").click()
    problem = page.locator(".flash.problem[role=alert]")
    await expect(problem).to_contain_text("last owner")
    await expect(page.locator(".flash:not(.problem)")).to_have_count(0)
    # Its colour is the error colour, not the info blue.
    colour = await problem.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(255, 235, 233)", colour  # --bad-bg
