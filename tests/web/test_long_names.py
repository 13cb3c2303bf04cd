"""A long load-test name does not break the runs list: it is cut with an ellipsis, the full
name is its title (shown on hover), and the other columns stay in view, on a desktop and
on a phone (issue 14, item 3)."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, expect

from api.support import new_run
from conftest import Server
from web.conftest import new_page, sign_in_with_token

LONG = ("checkout_flow_step_" * 9)[:167]  # 167 characters, no place to break a line


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
async def test_long_load_test_name_is_ellipsized(
    browser: Browser, app_server: Server, api: httpx.AsyncClient, width: int, height: int
) -> None:
    assert len(LONG) == 167
    await new_run(api, name=LONG)
    await new_run(api, name="short")
    page = await new_page(browser, app_server, viewport={"width": width, "height": height})
    try:
        await sign_in_with_token(page, app_server.token, "/projects/1/runs")
        # The columns after the name start within the screen, not hundreds of pixels beyond.
        for heading in ("Status", "Result"):
            box = await page.get_by_role("columnheader", name=heading).bounding_box()
            assert box is not None and box["x"] + box["width"] <= width, (heading, box)
        cell = page.locator("table.runs tr", has_text="checkout_").locator("td").nth(1)
        box = await cell.bounding_box()
        assert box is not None and box["width"] <= width / 2, box
        # Cut with an ellipsis, the full name on hover (its title).
        name = cell.locator(".ellipsis")
        await expect(name).to_have_attribute("title", LONG)
        assert await name.evaluate("e => e.scrollWidth > e.clientWidth"), "shown whole"
        assert await name.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    finally:
        await page.context.close()
