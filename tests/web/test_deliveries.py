"""The delivery log: filters by channel, run, status and event keep their values and narrow
the list; "Redeliver N failed" says how many failed deliveries the filters select and
sends exactly those again, never a removed channel's."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from api.support import (
    all_done,
    create_webhook,
    list_deliveries,
    new_run,
    set_status,
    wait_deliveries,
)
from conftest import Server
from loadbell.testing import RecordingReceiver
from loadbell.web import deliveries as log_page
from web.conftest import sign_in_with_token

EVENTS = ["test.started", "test.finished"]


async def two_channels_two_runs(
    api: httpx.AsyncClient, good: RecordingReceiver, bad: RecordingReceiver, extra: int = 0
) -> dict[str, Any]:
    """Two webhooks: "Good hook" answers 200, "Bad hook" 500 (one attempt, so it fails at
    once). Run 1 starts and finishes, run 2 only starts: six deliveries, three failed."""
    ok = await create_webhook(api, f"{good.url}/hook", name="Good hook", events=EVENTS)
    failing = await create_webhook(
        api, f"{bad.url}/hook", name="Bad hook", events=EVENTS, retry={"max_attempts": 1}
    )
    first = await new_run(api, name="checkout")
    await set_status(api, first["id"], 2)
    await set_status(api, first["id"], 3, result="passed")
    second = await new_run(api, name="search")
    await set_status(api, second["id"], 2)
    await wait_deliveries(api, lambda items: len(items) == 6 + extra and all_done(items))
    return {"good": ok, "bad": failing, "first": first, "second": second}


async def shown(page: Page) -> list[str]:
    """Each listed delivery's summary line: "status event channel run N ..."."""
    out = []
    for item in await page.locator("ul.deliveries > li").all():
        summary = item.locator(":scope > details > summary")
        out.append(" ".join((await summary.inner_text()).split()))
    return out


async def test_filters_narrow_the_log_and_keep_their_values(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Channel, run, status and event each narrow the list, alone and together; a wrong
    filter is said on the page."""
    async with RecordingReceiver() as good, RecordingReceiver(status=500) as bad:
        ids = await two_channels_two_runs(api, good, bad)
    await sign_in_with_token(page, app_server.token, "/orgs/1/deliveries")
    assert len(await shown(page)) == 6
    bar = page.get_by_role("form", name="Filter deliveries")

    await bar.locator("select[name=channel_id]").select_option(label="Bad hook")
    await bar.get_by_role("button", name="Filter").click()
    await page.wait_for_url(f"**channel_id={ids['bad']['id']}**")
    items = await shown(page)
    assert len(items) == 3 and all("Bad hook" in i and i.startswith("failed") for i in items)
    await expect(bar.locator("select[name=channel_id]")).to_have_value(str(ids["bad"]["id"]))

    await bar.locator("select[name=status]").select_option("succeeded")
    await bar.get_by_role("button", name="Filter").click()
    await expect(page.locator(".empty")).to_contain_text("No deliveries match")

    await page.get_by_role("link", name="Clear").click()
    await expect(bar.locator("select[name=channel_id]")).to_have_value("")
    await bar.locator("input[name=run_id]").fill(str(ids["second"]["id"]))
    await bar.get_by_role("button", name="Filter").click()
    items = await shown(page)
    assert len(items) == 2 and all(f"run {ids['second']['id']}" in i for i in items)
    await expect(bar.locator("input[name=run_id]")).to_have_value(str(ids["second"]["id"]))

    await bar.locator("input[name=run_id]").fill("")
    await bar.locator("select[name=event_type]").select_option("test.finished")
    await bar.get_by_role("button", name="Filter").click()
    items = await shown(page)
    assert len(items) == 2 and all("test.finished" in i for i in items)

    await bar.locator("select[name=status]").select_option("failed")
    await bar.get_by_role("button", name="Filter").click()
    [item] = await shown(page)
    assert "Bad hook" in item and "test.finished" in item and f"run {ids['first']['id']}" in item
    await expect(bar.locator("select[name=event_type]")).to_have_value("test.finished")
    await expect(bar.locator("select[name=status]")).to_have_value("failed")

    # A wrong status in the address is said on the page, not a crash.
    await page.goto("/orgs/1/deliveries?status=lost")
    await expect(page.locator(".error-text")).to_contain_text("status")
    # So is a run that does not exist (or belongs to another organization).
    await page.goto("/orgs/1/deliveries?run_id=999999")
    await expect(page.locator(".error-text")).to_contain_text("run 999999 not found")
    assert await shown(page) == []


async def test_redeliver_all_failed_sends_what_the_filters_select(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """On ?run_id=1&status=failed the bulk button counts and resends that run's failures
    only: not the other run's, and not those of a removed channel (issue 14, item 6)."""
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    async with RecordingReceiver() as good, RecordingReceiver(status=500) as bad:
        doomed = await create_webhook(
            api, f"{bad.url}/doomed", name="Doomed hook", events=EVENTS, retry={"max_attempts": 1}
        )
        ids = await two_channels_two_runs(api, good, bad, extra=3)
        assert (await api.delete(f"/channels/{doomed['id']}")).status_code == 204
        bad.status = 200  # the receiver is fixed
        first = ids["first"]["id"]
        await sign_in_with_token(
            page, app_server.token, f"/orgs/1/deliveries?run_id={first}&status=failed"
        )
        # Said before it asks: the two failures of run 1 on the live "Bad hook".
        await expect(page.locator("#bulk-count")).to_contain_text("2 failed deliveries match")
        before = len(bad.requests)
        await page.get_by_role("button", name="Redeliver 2 failed").click()
        await expect(page.locator(".flash")).to_contain_text("2 failed deliveries are being sent")
        await wait_deliveries(
            api,
            lambda items: sum(d["status"] == "succeeded" for d in items) == 2,
            timeout=60,
            channel_id=ids["bad"]["id"],
        )
        [left] = await list_deliveries(api, channel_id=ids["bad"]["id"], status="failed")
        assert left["run_id"] == ids["second"]["id"]  # the other run's failure stays
        assert len(bad.requests) == before + 2
        assert not any(r.path == "/doomed" for r in bad.requests[before:])

        # Nothing left to send for run 1: the page says so and offers no button.
        await page.goto(f"/orgs/1/deliveries?run_id={first}&status=failed")
        await expect(page.locator("#bulk-count")).to_contain_text("No failed delivery matches")
        await expect(page.locator("#bulk-redeliver")).to_have_count(0)
    assert len(good.requests) == 3  # the good channel's deliveries were not sent again


async def test_past_its_bound_the_failed_count_says_so_and_sends_them_all(
    page: Page, app_server: Server, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed count is exact up to the log's bound and "N+" past it (D56); the button
    still sends every failure up to the newest one counted."""
    monkeypatch.setattr(log_page, "TOTAL_CAP", 2)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    async with RecordingReceiver() as good, RecordingReceiver(status=500) as bad:
        ids = await two_channels_two_runs(api, good, bad)  # three failures on "Bad hook"
        bad.status = 200
        await sign_in_with_token(page, app_server.token, "/orgs/1/deliveries")
        await expect(page.locator("#bulk-count")).to_contain_text(
            "2+ failed deliveries match these filters"
        )
        before = len(bad.requests)
        await page.get_by_role("button", name="Redeliver 2+ failed").click()
        await expect(page.locator(".flash")).to_contain_text("3 failed deliveries are being sent")
        await wait_deliveries(
            api,
            lambda items: sum(d["status"] == "succeeded" for d in items) == 3,
            timeout=60,
            channel_id=ids["bad"]["id"],
        )
        assert len(bad.requests) == before + 3
