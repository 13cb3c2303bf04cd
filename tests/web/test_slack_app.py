"""Seed 003 in the browser with the Slack app: "Set Up Slack Integration" leaves the page
without saving, Slack's "Allow" brings the browser back to the configuration, which shows
"Done" and the workspace; a project's own install and its removal; "Send Test Message"."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Dialog, Page, Route, expect
from yarl import URL

from api.slack_support import CALLBACK
from conftest import Server
from loadbell.settings import Settings
from loadbell.testing.fake_slack import FakeSlackApi
from web.conftest import sign_in_with_token


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(redirect_urls=[CALLBACK]) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, slack: FakeSlackApi) -> Settings:
    return settings.model_copy(update=slack.settings())


async def follow_public_url(page: Page, server: Server) -> None:
    """The public URL (http://loadbell.test) is this test server: Slack's redirect to the
    callback goes there."""

    async def to_server(route: Route) -> None:
        public = URL(route.request.url)
        target = URL(server.url).with_path(public.path).with_query(public.query)
        await route.fulfill(status=302, headers={"Location": str(target)})

    await page.context.route("http://loadbell.test/**", to_server)


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_slack_app_install_remove_and_test_message(
    page: Page, app_server: Server, api: httpx.AsyncClient, slack: FakeSlackApi
) -> None:
    """Install from the organization page, see Done, send a test message; a project's own
    install overrides it and "Remove" falls back to the organization's."""
    general = slack.add_channel("load-tests")
    await follow_public_url(page, app_server)
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=slack_app")
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page.locator("#slack-title + p")).to_contain_text("Not set up")
    await expect(page.get_by_role("button", name="Remove Slack Integration")).to_have_count(0)

    # Typed but not saved: the set-up leaves without saving (and asks first).
    await page.get_by_label("Target channels").fill("#load-tests")
    page.on("dialog", accept)
    await page.get_by_role("button", name="Set Up Slack Integration").click()
    await expect(page.locator("#notice")).to_contain_text("Slack integration done")
    await expect(page.locator("#slack-title + p")).to_contain_text("Fake Workspace")
    await expect(page.get_by_label("Target channels")).to_have_value("")

    await page.get_by_label("Target channels").fill("#load-tests")
    await page.get_by_role("button", name="Send Test Message").click()
    await expect(page.locator("#test-result .status-code")).to_contain_text("200")
    assert [m.channel_id for m in slack.messages] == [general.id]

    # A project installs its own workspace, then removes it: the organization's applies.
    slack.install_team = slack.add_team("T0OTHER01", "Project Workspace").id
    await page.goto("/integrations/1/projects/1")
    await expect(page.locator("#slack-title + p")).to_contain_text("inherited")
    await page.get_by_role("button", name="Set Up Slack Integration").click()
    await expect(page.locator("#notice")).to_contain_text("Slack integration done")
    await expect(page.locator("#slack-title + p")).to_contain_text("Project Workspace")
    await expect(page.locator("#slack-title + p")).to_contain_text("overridden here")
    await page.get_by_role("button", name="Remove Slack Integration").click()
    await expect(page.locator(".flash")).to_contain_text("Fake Workspace")
    await expect(page.locator("#slack-title + p")).to_contain_text("inherited")


async def test_send_test_message_needs_a_complete_configuration(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Without an install the button is disabled and the page says what is missing."""
    r = await api.post(
        "/channels",
        json={"organization_id": 1, "kind": "slack_app", "name": "slack", "config": {}},
    )
    assert r.status_code == 201, r.text
    await sign_in_with_token(page, app_server.token, f"/integrations/{r.json()['id']}/projects/1")
    await expect(page.get_by_role("button", name="Send Test Message")).to_be_disabled()
    await expect(page.locator("#test-title + p")).to_contain_text("integration data")


async def test_cancel_and_stale_links_return_to_the_integration(
    page: Page, app_server: Server, slack: FakeSlackApi
) -> None:
    """ "Cancel" on Slack's page, and a link used again, come back to the integration's
    page with a clear message and "Set Up Slack Integration" to start again; a link
    loadbell never issued comes back to the Integrations list (issue 14, item 1)."""
    slack.add_channel("load-tests")
    await follow_public_url(page, app_server)
    callbacks: list[str] = []
    page.on(
        "request",
        lambda r: callbacks.append(r.url) if "/oauth/callback" in r.url else None,
    )
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=slack_app")
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page).to_have_url(re.compile(r"/integrations/\d+$"))
    channel_page = page.url

    slack.decline_next()
    await page.get_by_role("button", name="Set Up Slack Integration").click()
    await expect(page.locator("#problem")).to_contain_text("Slack did not install the app")
    assert page.url.startswith(channel_page)
    await expect(page.locator("#slack-title + p")).to_contain_text("Not set up")
    await expect(page.get_by_role("button", name="Set Up Slack Integration")).to_be_visible()

    # The same link again: already used.
    assert callbacks
    await page.goto(callbacks[-1])
    await expect(page.locator("#problem")).to_contain_text("can no longer be used")
    assert page.url.startswith(channel_page)
    await expect(page.get_by_role("button", name="Set Up Slack Integration")).to_be_visible()

    # A state loadbell never issued: the Integrations list, with the same advice.
    await page.goto(f"{app_server.url}/api/v1/slack/oauth/callback?state=forged&code=x")
    await expect(page.locator("#problem")).to_contain_text("can no longer be used")
    await expect(page).to_have_url(re.compile(r"/orgs/1/integrations\?slack=invalid_state$"))

    # Starting again works.
    await page.goto(channel_page)
    await page.get_by_role("button", name="Set Up Slack Integration").click()
    await expect(page.locator("#notice")).to_contain_text("Slack integration done")
    await expect(page.locator("#problem")).to_have_count(0)
