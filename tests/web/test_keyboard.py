"""The pages with the keyboard alone: the skip link comes first and leads to the content,
every stop of the Tab key shows a focus ring, and events the chosen format cannot express
are skipped by Tab and cannot be ticked. (The switcher's "Go" after a key:
tests/web/test_sign_in.py.)"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Page, expect

from api.support import create_webhook
from conftest import Server
from web.conftest import sign_in_with_token

# What the focused element shows, and whether it is on screen.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(),
    name: el.getAttribute("name") || el.id || (el.textContent || "").trim().slice(0, 40),
    outline: style.outlineStyle,
    width: parseFloat(style.outlineWidth),
    visible: box.width > 0 && box.height > 0,
    disabled: el.disabled === true,
  };
}"""
MAX_STOPS = 300  # more than any page has; a walk that never ends is a focus trap


async def tab_stops(page: Page) -> list[dict[str, object]]:
    """Each element the Tab key reaches from the top of the page, in order, until focus
    leaves the page."""
    await page.locator("body").focus()
    stops: list[dict[str, object]] = []
    for _ in range(MAX_STOPS):
        await page.keyboard.press("Tab")
        stop = await page.evaluate(FOCUSED)
        if stop is None:
            return stops
        stops.append(stop)
    raise AssertionError(f"Tab did not leave the page after {MAX_STOPS} stops: {stops[-5:]}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_skip_link_comes_first_and_leads_to_the_content(
    page: Page, app_server: Server
) -> None:
    """The first Tab shows "Skip to content" on screen; Enter moves focus to the main
    content, so the next Tab lands in it, past the switcher and the menu."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations")
    await page.locator("body").focus()
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await page.keyboard.press("Enter")
    await expect(page.locator("main#main")).to_be_focused()
    await page.keyboard.press("Tab")
    inside = await page.evaluate("() => document.activeElement.closest('main') !== null")
    assert inside, await page.evaluate(FOCUSED)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "path",
    [
        "/orgs/1/integrations/new?kind=webhook",  # the longest form
        "/integrations/1",  # a saved channel: signing, per-project links, remove
        "/orgs/1/deliveries",  # filters and the delivery list
        "/orgs/1/members",  # tables with forms in them
    ],
)
async def test_every_tab_stop_shows_a_focus_ring(
    page: Page, app_server: Server, api: httpx.AsyncClient, path: str
) -> None:
    """Walking a page with Tab, every stop is on screen, enabled and drawn with a focus
    ring (an outline of at least 2 px)."""
    await create_webhook(api, "http://127.0.0.1:9/hook")
    await sign_in_with_token(page, app_server.token, path)
    stops = await tab_stops(page)
    assert len(stops) > 10, stops  # the walk really went through the page
    for stop in stops:
        assert stop["visible"] and not stop["disabled"], stop
        assert stop["outline"] != "none" and float(str(stop["width"])) >= 2, stop


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_events_the_format_cannot_express_are_skipped_and_say_why(
    page: Page, app_server: Server
) -> None:
    """With the LoadImpact format, "Test starting" is greyed out: disabled (Tab skips it,
    a click does not tick it), with "(not in this format)" shown and read as its
    description. The template format, which can send it, makes it a normal box again;
    saving sends only the boxes that can be sent."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    starting = page.get_by_role("checkbox", name="Test starting")
    started = page.get_by_role("checkbox", name="Test started")
    await expect(page.get_by_label("Format", exact=True)).to_have_value("loadimpact")
    await expect(starting).to_be_disabled()
    await expect(starting).to_have_accessible_description("(not in this format)")
    await expect(page.locator(".event.unavailable").first).to_contain_text("(not in this format)")
    await expect(started).to_be_enabled()
    await expect(started).to_have_accessible_description("")

    names = [stop["name"] for stop in await tab_stops(page)]
    assert names.count("events") == 2, names  # started and finished, nothing greyed out
    await starting.click(force=True)  # a pointer on the greyed box
    await expect(starting).not_to_be_checked()

    await page.get_by_label("Format", exact=True).select_option("template")
    await expect(starting).to_be_enabled()
    await expect(starting).to_have_accessible_description("")
    await expect(page.locator(".event.unavailable")).to_have_count(0)
    await starting.check()
    await page.get_by_label("Format", exact=True).select_option("loadmance")
    await expect(starting).to_be_disabled()
    await expect(starting).to_be_checked()  # kept, for a way back to the template format
    await page.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    await page.get_by_role("button", name="Save Changes").click()
    await page.wait_for_url(re.compile(r"/integrations/\d+"))  # saved: the channel's page
    await expect(page.locator(".flash")).to_be_visible()
    await expect(starting).to_be_disabled()
    await expect(starting).not_to_be_checked()  # not sent, so not saved
