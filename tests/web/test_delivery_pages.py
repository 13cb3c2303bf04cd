"""The delivery log's pages: "Older" and "Newer" (a run's "Later" and "Earlier") links
that keep the filters, and a total that is exact up to a bound and "N+" past it."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from conftest import Server
from loadbell.store import delivery_log
from loadbell.testing import RecordingReceiver
from loadbell.web import deliveries as log_page
from web.conftest import sign_in_with_token


async def ids(page: Page) -> list[int]:
    listed = await page.locator("ul.deliveries > li").evaluate_all("els => els.map(e => e.id)")
    return [int(i.removeprefix("delivery-")) for i in listed]


async def follow(page: Page, name: str) -> None:
    await (
        page.get_by_role("navigation", name="Pages of deliveries (top)")
        .get_by_role("link", name=name)
        .click()
    )
    await page.wait_for_load_state()


async def test_newer_and_older_pages_and_a_total(
    page: Page, app_server: Server, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six deliveries, two a page: Older goes back, Newer forward, the first page has no
    Newer link; a run's pages go Later and Earlier; the total counts them, past its bound
    as "N+"."""
    monkeypatch.setattr(log_page, "PAGE", 2)
    async with RecordingReceiver() as rx:
        for n in range(3):
            await create_webhook(api, f"{rx.url}/{n}", name=f"hook {n}", events=["test.started"])
        first = await new_run(api)
        await set_status(api, first["id"], 2)
        second = await new_run(api)
        await set_status(api, second["id"], 2)
        items = await wait_deliveries(api, lambda i: len(i) == 6 and all_done(i))
    all_ids = sorted((d["id"] for d in items), reverse=True)
    nav = "Pages of deliveries (top)"

    await sign_in_with_token(page, app_server.token, "/orgs/1/deliveries")
    assert await ids(page) == all_ids[0:2]
    await expect(page.locator("#total")).to_have_text("6 deliveries in the log.")
    await expect(page.get_by_role("navigation", name=nav).get_by_role("link")).to_have_text(
        ["Older deliveries"]
    )
    await follow(page, "Older deliveries")
    assert await ids(page) == all_ids[2:4]
    await follow(page, "Older deliveries")
    assert await ids(page) == all_ids[4:6]
    await expect(page.get_by_role("navigation", name=nav).get_by_role("link")).to_have_text(
        ["Newer deliveries"]
    )
    await follow(page, "Newer deliveries")
    assert await ids(page) == all_ids[2:4]
    await follow(page, "Newer deliveries")
    assert await ids(page) == all_ids[0:2]
    await expect(page.get_by_role("navigation", name=nav).get_by_role("link")).to_have_text(
        ["Older deliveries"]
    )

    # A run's deliveries come oldest first: Later, then Earlier; the filter stays.
    run_ids = sorted(d["id"] for d in items if d["run_id"] == first["id"])
    await page.goto(f"/orgs/1/deliveries?run_id={first['id']}")
    assert await ids(page) == run_ids[0:2]
    await expect(page.locator("#total")).to_have_text("3 deliveries match these filters.")
    await follow(page, "Later deliveries")
    assert f"run_id={first['id']}" in page.url
    assert await ids(page) == run_ids[2:3]
    await follow(page, "Earlier deliveries")
    assert await ids(page) == run_ids[0:2]

    # Past its bound the total says so rather than counting on.
    monkeypatch.setattr(delivery_log, "TOTAL_CAP", 4)
    await page.goto("/orgs/1/deliveries")
    await expect(page.locator("#total")).to_have_text("4+ deliveries in the log.")
    await page.goto("/orgs/1/deliveries?status=failed")
    await expect(page.locator("#total")).to_have_text("0 deliveries match these filters.")
