"""The delivery log: filters by channel, run, status and event keep their values and narrow
the list; "Redeliver all failed since" proposes the last 24 hours and sends every failed
delivery of that time (of the filtered channel) again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import Page, expect

from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token

EVENTS = ["test.started", "test.finished"]


async def two_channels_two_runs(
    api: httpx.AsyncClient, good: RecordingReceiver, bad: RecordingReceiver
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
    await wait_deliveries(api, lambda items: len(items) == 6 and all_done(items))
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


async def test_redeliver_all_failed_since(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """The bulk form proposes 24 hours ago; it resends the filtered channel's failures, and
    a time after them finds nothing."""
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    async with RecordingReceiver() as good, RecordingReceiver(status=500) as bad:
        ids = await two_channels_two_runs(api, good, bad)
        bad.status = 200  # the receiver is fixed
        await sign_in_with_token(page, app_server.token, "/orgs/1/deliveries")
        since = page.get_by_label("Redeliver all failed since (UTC)")
        proposed = datetime.fromisoformat(await since.input_value()).replace(tzinfo=UTC)
        assert abs(proposed - (datetime.now(UTC) - timedelta(hours=24))) < timedelta(minutes=2)

        # A time after every failure: nothing to send.
        await since.fill((datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
        await page.get_by_role("button", name="Redeliver all failed").click()
        await expect(page.locator(".flash")).to_contain_text("nothing to send again")

        bar = page.get_by_role("form", name="Filter deliveries")
        await bar.locator("select[name=channel_id]").select_option(label="Bad hook")
        await bar.get_by_role("button", name="Filter").click()
        await expect(
            page.get_by_label("Redeliver all failed of this channel since (UTC)")
        ).to_be_visible()
        await page.get_by_role("button", name="Redeliver all failed").click()
        await expect(page.locator(".flash")).to_contain_text("3 failed deliveries since")
        await wait_deliveries(
            api,
            lambda items: len(items) == 3 and all(d["status"] == "succeeded" for d in items),
            channel_id=ids["bad"]["id"],
        )
        assert len(bad.requests) == 6  # three failures, three redeliveries
    assert len(good.requests) == 3  # the good channel's deliveries were not sent again
