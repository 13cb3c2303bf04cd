"""On a phone (390 x 844), measured in Chromium: the project settings table keeps its
column names and its inputs inside the card, the tokens' Revoke button is on screen and
the run page's chart labels are legible (issue 14)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from api.support import create_webhook, set_status
from conftest import Server
from web.conftest import new_page, sign_in_with_token

PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def phone(browser: Browser, app_server: Server) -> AsyncIterator[Page]:
    tab = await new_page(browser, app_server, viewport=PHONE, is_mobile=True, has_touch=True)
    yield tab
    await tab.context.close()


async def test_project_settings_table_on_a_phone(
    phone: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Each value is under its column's name, and every field stays inside the card."""
    channel = await create_webhook(api, "http://127.0.0.1:9/hook")
    await sign_in_with_token(phone, app_server.token, f"/integrations/{channel['id']}/projects/1")
    card = await phone.locator("#project-form").bounding_box()
    assert card is not None and card["x"] >= 0 and card["x"] + card["width"] <= PHONE["width"]
    cells = phone.locator("table.settings td")
    assert await cells.count() >= 6
    for cell in await cells.all():
        label = await cell.evaluate("e => getComputedStyle(e, '::before').content")
        assert label in ('"Organization"', '"This project"', '"In effect"'), label
    fields = phone.locator("#project-form input:visible, #project-form select:visible")
    assert await fields.count() >= 3
    for field in await fields.all():
        box = await field.bounding_box()
        assert box is not None
        assert box["x"] >= card["x"] and box["x"] + box["width"] <= card["x"] + card["width"], (
            box,
            card,
        )


async def test_revoke_is_on_screen_on_a_phone(phone: Page, app_server: Server) -> None:
    """The tokens table fits the screen: Revoke is reachable without scrolling sideways."""
    await sign_in_with_token(phone, app_server.token, "/orgs/1/members")
    form = phone.locator("#token-form")
    await form.get_by_label("Name").fill("Phone CI")
    await form.get_by_role("button", name="Create token").click()
    revoke = phone.locator("table.tokens tr", has_text="Phone CI").get_by_role(
        "button", name="Revoke"
    )
    await expect(revoke).to_be_visible()
    box = await revoke.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    wide = await phone.evaluate("document.documentElement.scrollWidth")
    assert wide <= PHONE["width"], wide


async def test_chart_labels_are_legible_on_a_phone(
    phone: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Every chart's axis labels render at 11 px or more."""
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    await set_status(api, run["id"], 2)
    for rps, p95, errors in [(20, 300, 0.0), (45, 420, 0.01), (52, 640, 0.05)]:
        r = await api.post(
            f"/runs/{run['id']}/reports",
            json={"metrics": {"rps": rps, "p95_ms": p95, "error_rate": errors}},
        )
        assert r.status_code == 201, r.text
        await asyncio.sleep(0.05)
    await sign_in_with_token(phone, app_server.token, f"/runs/{run['id']}")
    sizes = await phone.evaluate(
        """() => [...document.querySelectorAll('#charts svg')]
            .filter(svg => svg.getBoundingClientRect().width > 0)
            .map(svg => {
              const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
              return [...svg.querySelectorAll('text')].map(
                t => parseFloat(getComputedStyle(t).fontSize) * scale);
            })"""
    )
    assert len(sizes) == 3, sizes  # one chart of each series is shown
    for chart in sizes:
        assert chart and min(chart) >= 11, sizes


async def test_menu_stays_a_row_of_tabs_on_a_short_page(phone: Page, app_server: Server) -> None:
    """On a short page (a 404 keeps the menu) the tabs are not stretched to fill the screen."""
    await sign_in_with_token(phone, app_server.token)
    await phone.goto("/runs/987654")
    menu = await phone.get_by_role("navigation", name="Main").bounding_box()
    assert menu is not None and menu["height"] < 80, menu
