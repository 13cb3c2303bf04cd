"""The Setup form's rough edges (issue 14, "should be fixed"): a header value past the
limit is refused by name, a failed test looks failed, the error summary speaks in the
form's labels and links to the fields, header rows do not multiply, and the webhook form
uses plain words."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect

from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token

NEW_WEBHOOK = "/orgs/1/integrations/new?kind=webhook"


async def test_a_header_value_past_the_limit_is_refused_by_name(
    page: Page, app_server: Server, receiver: RecordingReceiver, api: httpx.AsyncClient
) -> None:
    """A 200,000-character header value is refused with a message that names the header
    and the limit, the value is kept as typed, and nothing is saved."""
    await sign_in_with_token(page, app_server.token, NEW_WEBHOOK)
    await page.locator("#f-url").fill(f"{receiver.url}/hook")
    await page.get_by_label("Header name").first.fill("X-Big")
    value = page.get_by_label("Header value").first
    await value.evaluate("(el, v) => { el.value = v; }", "v" * 200_000)
    await page.get_by_role("button", name="Save Changes").click()

    summary = page.locator("#error-summary")
    await expect(summary.get_by_role("link", name="Header X-Big")).to_be_visible()
    await expect(summary).to_contain_text("200,000 characters long; at most 4,096")
    assert (await api.get("/channels")).json()["items"] == []
    assert len(await page.get_by_label("Header value").first.input_value()) == 200_000


async def test_a_failed_test_looks_failed_and_the_save_is_confirmed(
    page: Page, app_server: Server, receiver: RecordingReceiver
) -> None:
    """ "Test Hook" against a receiver that answers 500: the banner confirms the save only,
    and the result says, in the error style, that the test failed and why."""
    receiver.status = 500
    receiver.body = "receiver is down"
    await sign_in_with_token(page, app_server.token, NEW_WEBHOOK)
    await page.locator("#f-url").fill(f"{receiver.url}/hook")
    await page.get_by_role("button", name="Test Hook").click()

    result = page.locator("#test-result")
    await expect(result.locator(".status-code")).to_contain_text("500")
    await expect(page.locator(".flash")).to_have_text("Changes saved.")
    await expect(result).to_have_class(re.compile(r"\bbad\b"))
    await expect(page.locator("#test-result-title")).to_contain_text("Test message failed")
    await expect(page.locator("#test-why")).to_contain_text("500")
    colour = await page.locator("#test-result-title").evaluate("el => getComputedStyle(el).color")
    assert colour == "rgb(192, 54, 44)"  # --bad


async def test_the_error_summary_uses_labels_and_links_to_the_fields(
    page: Page, app_server: Server
) -> None:
    """A refused form's summary names "Webhook URL", not ``config.url``; its link focuses
    the field; the error is not repeated under Preview."""
    await sign_in_with_token(page, app_server.token, NEW_WEBHOOK)
    await page.locator("#f-url").fill("ftp://example.com/x")
    await page.get_by_role("button", name="Save Changes").click()

    summary = page.locator("#error-summary")
    link = summary.get_by_role("link", name="Webhook URL")
    await expect(link).to_have_attribute("href", "#f-url")
    await expect(summary).not_to_contain_text("config.url")
    await link.click()
    await expect(page.locator("#f-url")).to_be_focused()

    await page.wait_for_load_state("networkidle")  # the live preview had its chance
    preview = page.locator("#preview-out")
    await expect(preview).not_to_contain_text("must be an absolute")
    await expect(preview.locator(".field-error")).to_have_count(0)
    await expect(page.locator("#setup-form")).to_contain_text(
        "must be an absolute", ignore_case=True
    )


async def test_empty_header_rows_do_not_multiply(page: Page, app_server: Server) -> None:
    """Each refused submit shows the typed header and one blank row: not 2, 4, 6, 8."""
    await sign_in_with_token(page, app_server.token, NEW_WEBHOOK)
    names = page.get_by_label("Header name")
    await names.first.fill("X-Token")
    await page.get_by_label("Header value").first.fill("abc")
    for _ in range(3):
        await page.get_by_role("button", name="Save Changes").click()  # no URL: refused
        await expect(page.locator("#error-summary")).to_be_visible()
        await expect(names).to_have_count(2)
        await expect(names.nth(0)).to_have_value("X-Token")
        await expect(names.nth(1)).to_have_value("")


async def test_the_webhook_form_uses_plain_words(page: Page, app_server: Server) -> None:
    """Formats are named for what they are for, "Source" shows only for the Loadmance
    envelope, and the template reference is a link to a page loadbell serves."""
    await sign_in_with_token(page, app_server.token, NEW_WEBHOOK)
    options = await page.get_by_label("Format").locator("option").all_inner_texts()
    assert "LoadImpact / k6 Cloud v4" in options
    assert not [o for o in options if "seed" in o.lower()]

    source = page.get_by_label("Source")
    await expect(source).to_be_hidden()
    await page.get_by_label("Format").select_option("loadmance")
    await expect(source).to_be_visible()
    await page.get_by_label("Format").select_option("template")
    await expect(source).to_be_hidden()

    link = page.get_by_role("link", name="template reference")
    await expect(link).to_have_attribute("href", "/help/templates")
    reference = await page.context.new_page()
    await reference.goto("/help/templates")
    await expect(reference.locator("#help-text")).to_contain_text("## How a template is rendered")
