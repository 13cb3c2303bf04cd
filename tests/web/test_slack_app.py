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


async def test_send_test_message_waits_for_the_install_and_a_target(
    page: Page, app_server: Server, slack: FakeSlackApi
) -> None:
    """On the Slack app's own page, "Send Test Message" is disabled, with the reason beside
    it, until the app is installed and a target channel is set (issue 14)."""
    slack.add_channel("load-tests")
    await follow_public_url(page, app_server)
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=slack_app")
    button = page.get_by_role("button", name="Send Test Message")
    why = page.locator("#test-needs")
    await expect(button).to_be_disabled()
    await expect(why).to_contain_text("Slack workspace")

    await page.get_by_role("button", name="Save Changes").click()
    await expect(page).to_have_url(re.compile(r"/integrations/\d+$"))
    await expect(button).to_be_disabled()
    await expect(why).to_contain_text("Slack workspace")
    await expect(why).to_contain_text("target channels")
    await page.get_by_label("Target channels").fill("#load-tests")
    await expect(button).to_be_disabled()  # typing a target is not enough: no install yet

    page.on("dialog", accept)  # leaving with the typed target unsaved: yes
    await page.get_by_role("button", name="Set Up Slack Integration").click()
    await expect(page.locator("#notice")).to_contain_text("Slack integration done")
    await expect(button).to_be_disabled()
    await expect(why).to_contain_text("target channels")
    await expect(why).not_to_contain_text("Slack workspace")
    await page.get_by_label("Target channels").fill("#load-tests")
    await expect(button).to_be_enabled()
    await expect(why).to_be_hidden()
    await button.click()
    await expect(page.locator("#test-result-title")).to_have_text("Test message delivered")
    assert len(slack.messages) == 1


async def test_slack_preview_is_drawn_as_the_message(page: Page, app_server: Server) -> None:
    """The Slack form's preview is the message drawn (header, bold labels, the button, the
    context line), its Block Kit JSON folded away under it; the events ticked by default
    are the run's lifecycle, not intermediate reports or project changes (issue 14)."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=slack")
    message = page.locator("#preview-rendered")
    await expect(message.locator(".slack-header")).to_contain_text(
        "Load test failed: checkout-flow"
    )
    await expect(message.locator(".slack-field strong").first).to_be_visible()
    await expect(message.locator("a.slack-button")).to_have_attribute(
        "href", re.compile(r"^http://loadbell\.test/runs/")
    )
    await expect(message.locator(".slack-context")).to_be_visible()
    await expect(message).not_to_contain_text('"blocks"')
    await expect(page.locator("#preview-body")).to_be_hidden()  # the JSON, folded
    await page.get_by_text("Block Kit JSON").click()
    await expect(page.locator("#preview-body")).to_contain_text('"blocks"')

    for event in ("test.started", "test.finished", "test.threshold_failed"):
        await expect(page.locator(f"input[name=events][value='{event}']")).to_be_checked()
    for event in ("test.report_intermediate", "project.created", "load_test.updated"):
        await expect(page.locator(f"input[name=events][value='{event}']")).not_to_be_checked()
