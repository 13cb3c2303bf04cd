"""The main pages, photographed with realistic data. ``LOADBELL_UPDATE_SCREENSHOTS=1``
writes them to docs/screenshots/ (the README shows them); otherwise to a temporary
directory, so the test still proves every page renders with data."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from api.support import all_done, create_webhook, set_status, wait_deliveries
from conftest import Server
from loadbell.testing import FakeSlackWebhook, RecordingReceiver
from web.conftest import new_page, sign_in_with_token
from web.test_members import invite
from web.test_runs import FINAL

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
REPORTS = [
    (12, 180, 0.0),
    (31, 240, 0.002),
    (44, 310, 0.004),
    (49, 420, 0.011),
    (51, 560, 0.024),
    (50, 640, 0.041),
    (52, 610, 0.035),
]


async def build_state(api: httpx.AsyncClient, hook: str, slack: str) -> dict[str, int]:
    """An organization with a signed webhook, Slack, a project override, and a failed run
    whose notification failed once."""
    checkout = (await api.post("/projects", json={"organization_id": 1, "name": "Checkout"})).json()
    await create_webhook(
        api,
        hook,
        name="CI hook",
        events=["test.started", "test.finished"],
        filters={"test.finished": {"results": ["failed"]}},
        retry={"max_attempts": 1},
        config={"url": hook, "format": "loadimpact", "headers": {"X-Token": "s3cret"}},
    )
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "slack",
            "name": "#load-tests",
            "config": {"webhook_url": slack},
            "events": ["test.started", "test.finished"],
        },
    )
    assert r.status_code == 201, r.text
    slack_id = r.json()["id"]
    r = await api.put(f"/channels/{slack_id}/overrides/{checkout['id']}", json={"enabled": False})
    assert r.status_code == 200, r.text
    for name, result in (("home-page", "passed"), ("search", "passed")):
        run = (
            await api.post(
                "/runs", json={"project_id": 1, "load_test_name": name, "trigger": "scheduled"}
            )
        ).json()
        await set_status(api, run["id"], 2)
        await set_status(api, run["id"], 3, result=result, metrics={**FINAL, "thresholds": []})
    run = (
        await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout-flow"})
    ).json()
    await set_status(api, run["id"], 2)
    for rps, p95, errors in REPORTS:
        await api.post(
            f"/runs/{run['id']}/reports",
            json={"metrics": {"rps": rps, "p95_ms": p95, "error_rate": errors}},
        )
        await asyncio.sleep(0.2)
    return {"run": run["id"], "checkout": checkout["id"], "slack": slack_id}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_screenshots(
    page: Page,
    browser: Browser,
    app_server: Server,
    api: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """Every main page renders with data, on a desktop and on a phone."""
    out = DOCS if os.environ.get("LOADBELL_UPDATE_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size({"width": 1280, "height": 860})
    receiver = await RecordingReceiver().start()
    async with FakeSlackWebhook() as slack:
        ids = await build_state(api, f"{receiver.url}/hooks/ci", slack.webhook_url())
        await receiver.stop()  # down when the run fails: one failed delivery to show
        await set_status(api, ids["run"], 3, result="failed", metrics=FINAL)
        await wait_deliveries(
            api,
            lambda items: all_done(items) and any(d["status"] == "failed" for d in items),
            timeout=30,
            run_id=ids["run"],
        )
        shots: list[str] = []

        async def shot(name: str, *, full: bool = False, target: Page = page) -> None:
            await target.screenshot(path=str(out / f"{name}.png"), full_page=full)
            shots.append(name)

        await page.goto("/login")
        await shot("sign-in")
        await sign_in_with_token(page, app_server.token, "/orgs/1/integrations")
        await shot("integrations", full=True)
        async with RecordingReceiver(port=receiver.port):
            await page.goto("/integrations/1")
            await page.get_by_role("button", name="Test Hook").click()
            await expect(page.locator("#test-result .status-code")).to_contain_text("200")
            await expect(page.locator("#preview-body")).to_be_visible()
            await shot("webhook-setup", full=True)
            await page.goto(f"/integrations/{ids['slack']}/projects/{ids['checkout']}")
            await shot("project-settings", full=True)
            await page.goto(f"/runs/{ids['run']}")
            await page.locator("#notifications details summary").first.click()
            await shot("run", full=True)
        await page.goto("/projects/1/runs")
        await shot("runs")
        await page.goto("/orgs/1/deliveries")
        await page.locator("li.delivery-failed summary").first.click()
        await shot("delivery-log", full=True)
        await invite(page, "Mia Member", "mia@example.com")
        await shot("members", full=True)

        phone = await new_page(
            browser,
            app_server,
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
        )
        try:
            await sign_in_with_token(phone, app_server.token, f"/runs/{ids['run']}")
            await shot("phone-run", target=phone)
            # Readable on a phone: nothing wider than the screen, no sideways scrolling.
            for path in (
                f"/runs/{ids['run']}",
                "/orgs/1/integrations",
                "/integrations/1",
                f"/integrations/{ids['slack']}/projects/{ids['checkout']}",
                "/projects/1/runs",
                "/orgs/1/deliveries",
                "/orgs/1/members",
            ):
                await phone.goto(path)
                fits = await phone.evaluate(
                    "document.documentElement.scrollWidth <= window.innerWidth"
                )
                assert fits, path
        finally:
            await phone.context.close()
    for name in shots:
        assert (out / f"{name}.png").stat().st_size > 10_000, name
