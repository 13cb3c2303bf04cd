"""The Integrations list shows each channel's health: its success rate over 24 hours in a
green, amber or red badge (grey without figures), its last success and its last failure."""

from __future__ import annotations

import httpx
from aiohttp import web
from playwright.async_api import Page, expect

from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from conftest import Server
from loadbell.testing import Received, RecordingReceiver
from web.conftest import sign_in_with_token

RUNS = 10


async def test_each_channel_shows_its_rate_badge_and_last_times(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Ten deliveries each: all delivered (green, 100 %), the first of ten failed (amber,
    90 %), all failed (red, 0 %); a channel that got none is grey."""
    flaky_failed = False

    def answer(r: Received) -> web.Response:
        nonlocal flaky_failed
        if r.path == "/bad" or (r.path == "/flaky" and not flaky_failed):
            flaky_failed = flaky_failed or r.path == "/flaky"
            return web.Response(status=500, text="no")
        return web.Response(text="ok")

    started = ["test.started"]
    one = {"max_attempts": 1}
    async with RecordingReceiver(handler=answer) as rx:
        for name in ("good", "flaky", "bad"):
            await create_webhook(
                api, f"{rx.url}/{name}", name=f"{name} hook", events=started, retry=one
            )
        await create_webhook(
            api, f"{rx.url}/quiet", name="quiet hook", events=["test.finished"], retry=one
        )
        for _ in range(RUNS):
            run = await new_run(api)
            await set_status(api, run["id"], 2)
        await wait_deliveries(api, lambda items: len(items) == 3 * RUNS and all_done(items))

    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations")
    hooks = page.locator("#kind-webhook li")

    def of(name: str) -> tuple[object, object, object]:
        row = hooks.filter(has=page.get_by_role("link", name=f"{name} hook", exact=True))
        return row.locator(".rate"), row.locator(".last-success"), row.locator(".last-failure")

    rate, success, failure = of("good")
    await expect(rate).to_contain_text("100 % delivered (24 h)")
    await expect(rate).to_have_class("badge rate rate-green")
    await expect(success).to_contain_text("UTC")
    await expect(failure).to_have_text("Last failure: none yet")

    rate, success, failure = of("flaky")
    await expect(rate).to_contain_text("90 % delivered (24 h)")
    await expect(rate).to_have_class("badge rate rate-amber")
    await expect(success).to_contain_text("UTC")
    await expect(failure).to_contain_text("UTC")

    rate, success, failure = of("bad")
    await expect(rate).to_contain_text("0 % delivered (24 h)")
    await expect(rate).to_have_class("badge rate rate-red")
    await expect(success).to_have_text("Last success: none yet")
    await expect(failure).to_contain_text("UTC")

    rate, success, failure = of("quiet")
    await expect(rate).to_contain_text("No deliveries in 24 h")
    await expect(rate).to_have_class("badge rate rate-grey")
    await expect(success).to_have_text("Last success: none yet")
