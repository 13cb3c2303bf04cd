"""The runs list filters by load test, status, result and trigger with a GET form: the
filters stay in the address and in the pagination links, and an empty result says that no
run matches."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from api.support import new_run, set_status
from conftest import Server
from loadbell.web import runs as runs_page
from web.conftest import sign_in_with_token


async def shown(page: Page) -> list[str]:
    """The run ids listed, as "#N"."""
    return [
        t.strip() for t in await page.locator("table.runs tbody td:first-child").all_inner_texts()
    ]


async def test_filters_narrow_the_runs_and_stay_in_the_pages(
    page: Page, app_server: Server, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load test, status, result and trigger each narrow the list, their values kept; the
    older page keeps them; a combination nothing matches says so."""
    monkeypatch.setattr(runs_page, "PAGE", 2)
    a = await new_run(api, name="checkout")
    await set_status(api, a["id"], 3, result="passed")
    b = await new_run(api, name="search", trigger="scheduled")
    await set_status(api, b["id"], 2)
    c = await new_run(api, name="checkout", trigger="scheduled")
    await set_status(api, c["id"], 3, result="failed")
    d = await new_run(api, name="checkout", trigger="scheduled")
    await set_status(api, d["id"], 3, result="passed")

    await sign_in_with_token(page, app_server.token, "/orgs/1/runs")
    assert await shown(page) == [f"#{d['id']}", f"#{c['id']}"]
    bar = page.get_by_role("form", name="Filter runs")

    await bar.get_by_label("Load test").select_option(label="checkout")
    await bar.get_by_label("Trigger").select_option("scheduled")
    await bar.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**trigger=scheduled**")
    assert await shown(page) == [f"#{d['id']}", f"#{c['id']}"]
    await expect(bar.get_by_label("Load test")).to_have_value(str(a["load_test_id"]))
    await expect(bar.get_by_label("Trigger")).to_have_value("scheduled")
    # Two of three scheduled checkout runs per page: the next page keeps the filters.
    older = page.locator("#older-runs")
    href = await older.get_attribute("href") or ""
    assert "trigger=scheduled" in href and f"load_test_id={a['load_test_id']}" in href
    await older.click()
    await page.wait_for_url("**before_id=**")
    assert await shown(page) == []  # a, the third checkout run, is manual
    await expect(page.locator("#no-match")).to_contain_text("No run matches these filters")
    await expect(bar.get_by_label("Trigger")).to_have_value("scheduled")

    await page.goto("/orgs/1/runs?result=failed")
    assert await shown(page) == [f"#{c['id']}"]
    await expect(bar.get_by_label("Result")).to_have_value("failed")

    await page.goto("/orgs/1/runs?status=2")
    assert await shown(page) == [f"#{b['id']}"]
    await expect(bar.get_by_label("Status")).to_have_value("2")

    await page.goto("/orgs/1/runs?status=2&result=passed")
    assert await shown(page) == []
    await expect(page.locator("#no-match")).to_contain_text("No run matches these filters")
    await page.locator("#no-match").get_by_role("link", name="Show every run").click()
    await page.wait_for_url("**/orgs/1/runs")
    assert len(await shown(page)) == 2

    await page.goto("/orgs/1/runs?status=42")
    await expect(page.get_by_role("alert")).to_contain_text("status")
