"""Journey 1 and the Setup form: a new owner signs in, sets up a webhook, presses
"Test Hook" and sees the receiver's answer; refused forms keep what was typed; secrets
are never shown back, except a new signing secret, once."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect
from standardwebhooks import Webhook

from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token


async def test_owner_sets_up_a_webhook_and_tests_it(
    page: Page, app_server: Server, receiver: RecordingReceiver
) -> None:
    """Sign in with the first-run token, Setup → WebHook, URL, Test Hook → the 200."""
    receiver.body = "hello from the receiver"
    await sign_in_with_token(page, app_server.token)
    await expect(page.get_by_role("heading", name="Integrations")).to_be_visible()
    await expect(page.locator("#kind-webhook")).to_contain_text("Not set up")

    await page.get_by_role("link", name="Setup WebHook").click()
    await page.get_by_label("URL").fill(f"{receiver.url}/hook")
    await page.get_by_role("button", name="Test Hook").click()

    result = page.locator("#test-result")
    await expect(result.locator(".status-code")).to_contain_text("200")
    await expect(result).to_contain_text("delivered")
    await expect(result).to_contain_text("hello from the receiver")
    await expect(result).to_contain_text(re.compile(r"\d+(\.\d)? ms"))
    assert [r.json() for r in receiver.requests] == [{"event": "test.notification_channel"}]
    assert receiver.requests[0].header("X-LoadImpact-Event") == "test.notification_channel"

    await page.get_by_role("link", name="Integrations").first.click()
    await expect(page.locator("#kind-webhook")).to_contain_text("Set up")


async def test_refused_form_keeps_what_was_typed(page: Page, app_server: Server) -> None:
    """A bad URL is refused next to its field, and the name and URL stay as typed."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.get_by_label("Name", exact=True).fill("Release hook")
    await page.get_by_label("URL").fill("ftp://example.com/x")
    await page.get_by_role("button", name="Save Changes").click()

    await expect(page.locator("#error-summary")).to_contain_text("http")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Release hook")
    await expect(page.get_by_label("URL")).to_have_value("ftp://example.com/x")
    await expect(page.locator(".field.invalid")).to_contain_text("must be an absolute http")


async def test_saved_secrets_are_never_shown_back(
    page: Page, app_server: Server, receiver: RecordingReceiver
) -> None:
    """The URL path and header values are masked; a blank field keeps the saved value."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.get_by_label("URL").fill(f"{receiver.url}/hook/secret-path-123")
    await page.get_by_label("Header name").first.fill("X-Token")
    await page.get_by_label("Header value").first.fill("s3cret-header-value")
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page.locator(".flash")).to_contain_text("saved")

    html = await page.content()
    assert "secret-path-123" not in html and "s3cret-header-value" not in html
    await expect(page.get_by_label("URL")).to_have_value("")
    await expect(page.locator("#setup-form")).to_contain_text("/****")

    # Save again without retyping: the stored URL and header still work.
    await page.get_by_role("button", name="Test Hook").click()
    await expect(page.locator("#test-result .status-code")).to_contain_text("200")
    assert receiver.requests[-1].path == "/hook/secret-path-123"
    assert receiver.requests[-1].header("X-Token") == "s3cret-header-value"


async def test_live_preview_renders_the_chosen_format(page: Page, app_server: Server) -> None:
    """The preview follows the form as it is typed, without saving or sending."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    preview = page.locator("#preview-body")
    await expect(preview).to_contain_text('"event":"test.finished"')
    await page.get_by_label("Format").select_option("loadmance")
    await page.get_by_label("Event", exact=True).select_option("test.finished")
    await expect(preview).to_contain_text('"type":"notification"')


async def test_signed_webhook_test_hook_shows_the_secret_once(
    page: Page, app_server: Server, receiver: RecordingReceiver
) -> None:
    """With "Sign requests", "Test Hook" shows the new secret (once) and the test's answer,
    and the receiver's signature verifies with that secret."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.get_by_label("URL").fill(f"{receiver.url}/hook")
    await page.get_by_label("Sign requests").check()
    await page.get_by_role("button", name="Test Hook").click()

    secret = (await page.locator("#new-secret").inner_text()).strip()
    assert secret.startswith("whsec_")
    await expect(page.locator("#test-result .status-code")).to_contain_text("200")
    await expect(page.locator("#test-result-title")).to_have_text("Test message delivered")
    await expect(page.locator(".flash")).to_contain_text("Changes saved.")
    await expect(page.locator(".flash")).to_contain_text("Copy the signing secret now")
    [request] = receiver.requests
    assert Webhook(secret).verify(request.body, request.headers) == {
        "event": "test.notification_channel"
    }

    await page.get_by_role("link", name="Integrations").first.click()
    await expect(page.locator(".flash")).to_have_count(0)  # the flash was not left over
    await page.locator("#kind-webhook a.channel-name").click()
    await expect(page.locator("#signing-title")).to_be_visible()
    await expect(page.locator("#new-secret")).to_have_count(0)
    assert secret not in await page.content()


async def test_rotated_secret_is_shown_once_and_both_sign(
    page: Page, app_server: Server, receiver: RecordingReceiver
) -> None:
    """Rotating shows the new secret once, with its flash on the same page; until the
    window ends each delivery verifies with the old and with the new secret."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.get_by_label("URL").fill(f"{receiver.url}/hook")
    await page.get_by_label("Sign requests").check()
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page.locator(".flash")).to_contain_text("Copy the signing secret now")
    old = (await page.locator("#new-secret").inner_text()).strip()

    await page.get_by_label("Old secret keeps signing for").select_option("1h")
    await page.get_by_role("button", name="Rotate secret").click()
    await expect(page.locator(".flash")).to_contain_text("Copy the new signing secret now")
    new = (await page.locator("#new-secret").inner_text()).strip()
    assert new.startswith("whsec_") and new != old
    signing = page.locator("section[aria-labelledby=signing-title]")
    await expect(signing).to_contain_text("#1 expires")
    await expect(signing).to_contain_text("#2 active")

    await page.get_by_role("button", name="Test Hook").click()
    await expect(page.locator("#test-result .status-code")).to_contain_text("200")
    await expect(page.locator("#new-secret")).to_have_count(0)  # shown once only
    await expect(page.locator(".flash")).not_to_contain_text("Copy")
    [request] = receiver.requests
    assert len(request.header("webhook-signature").split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)
    html = await page.content()
    assert old not in html and new not in html
