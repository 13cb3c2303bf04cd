"""Journey 2, seed 003: an organization's Slack set-up is inherited by a project; the
project overrides "Send messages" to disabled, and no message reaches Slack for its runs."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Page, expect

from api.support import all_done, set_status, wait_deliveries
from conftest import Server
from loadbell.testing import FakeSlackWebhook
from web.conftest import sign_in_with_token


async def test_project_disables_inherited_slack(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Org Slack → inherited by "Checkout" → "Send messages: Disabled" there → silence."""
    r = await api.post("/projects", json={"organization_id": 1, "name": "Checkout"})
    assert r.status_code == 201, r.text
    checkout = r.json()["id"]
    async with FakeSlackWebhook() as slack:
        await sign_in_with_token(page, app_server.token, "/orgs/1/integrations")
        await page.get_by_role("link", name="Setup Slack", exact=True).click()
        await page.get_by_label("URL").fill(slack.webhook_url())
        await page.get_by_role("button", name="Save Changes").click()
        await expect(page.locator(".flash")).to_contain_text("saved")

        # The project sees the organization's integration, inherited.
        await page.goto(f"/projects/{checkout}/integrations")
        slack_row = page.locator("#kind-slack")
        await expect(slack_row).to_contain_text("Inherited from the organization")
        await slack_row.get_by_role("link", name="Project settings").click()
        send = page.locator("#row-send-messages")
        await expect(send).to_contain_text("inherited")
        await expect(page.locator("table.settings")).to_contain_text("/****")  # masked URL

        await page.get_by_label("Send messages").select_option("disabled")
        await page.get_by_role("button", name="Save Changes").click()
        await expect(page.locator(".flash")).to_contain_text("saved")
        await expect(send).to_contain_text("overridden here")
        await expect(send).to_contain_text("Disabled")
        await page.goto(f"/projects/{checkout}/integrations")
        await expect(slack_row).to_contain_text("Disabled in this project")

        # A run of the project sends nothing; a run of another project still reaches Slack.
        quiet = (
            await api.post(
                "/runs", json={"project_id": checkout, "load_test_name": "checkout-flow"}
            )
        ).json()
        await set_status(api, quiet["id"], 2)
        await set_status(api, quiet["id"], 3)
        loud = (
            await api.post("/runs", json={"project_id": 1, "load_test_name": "home-page"})
        ).json()
        await set_status(api, loud["id"], 2)
        await set_status(api, loud["id"], 3)
        await wait_deliveries(
            api, lambda items: len(items) == 2 and all_done(items), run_id=loud["id"]
        )
        # home-page: test.started, test.finished (Slack's default events are the run's
        # lifecycle: load_test.created is not among them).
        await slack.wait_for(2)
        await asyncio.sleep(0.3)  # room for a stray message to arrive, if one were sent
        assert (await api.get("/deliveries", params={"run_id": quiet["id"]})).json()["items"] == []
        bodies = [r.body.decode() for r in slack.requests]
        assert len(bodies) == 2
        assert all("home-page" in b and "checkout-flow" not in b for b in bodies)

        # "Inherit everything" gives the organization's setting back.
        await page.goto(f"/integrations/{1}/projects/{checkout}")
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.get_by_role("button", name="Inherit everything").click()
        await expect(page.locator("#row-send-messages")).to_contain_text("inherited")


async def test_refused_project_settings_focus_the_summary(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """A refused override comes back with the summary focused and the value as typed."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "slack",
            "name": "#load-tests",
            "config": {"webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX"},
        },
    )
    assert r.status_code == 201, r.text
    await sign_in_with_token(page, app_server.token, f"/integrations/{r.json()['id']}/projects/1")
    await page.get_by_label("URL").fill("ftp://example.com/x")
    await page.get_by_role("button", name="Save Changes").click()
    summary = page.locator("#error-summary")
    await expect(summary).to_contain_text("http")
    await expect(summary).to_be_focused()
    await expect(page.get_by_label("URL")).to_have_value("ftp://example.com/x")
