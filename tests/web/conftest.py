"""Browser fixtures: Playwright driving Debian's Chromium against the real test server.

Playwright's own browser downloads are never used: ``bin/dev test`` installs the system
``chromium`` package, and the tests launch it by path. Outside CI a missing Chromium
skips the browser tests with a reason; under ``CI=true`` it fails them.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from conftest import IN_CI, Server

CHROMIUM = os.environ.get("LOADBELL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"Chromium not found at {CHROMIUM}: apt-get install chromium (bin/dev test does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


async def new_page(browser: Browser, server: Server, **options: object) -> Page:
    context = await browser.new_context(base_url=server.url, **options)  # type: ignore[arg-type]
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.fixture
async def page(browser: Browser, app_server: Server) -> AsyncIterator[Page]:
    """A fresh browser tab (own cookies) on the test server."""
    tab = await new_page(browser, app_server)
    yield tab
    await tab.context.close()


async def sign_in_with_token(page: Page, token: str, path: str = "/") -> None:
    await page.goto(path)
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in with token").click()
    await page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


async def sign_in_with_password(page: Page, email: str, password: str, path: str = "/") -> None:
    await page.goto(path)
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


async def csrf_of(page: Page) -> str:
    """The session's CSRF token, as every form of the current page carries it."""
    value = await page.locator("input[name=csrf]").first.get_attribute("value")
    assert value, "the page has no form with a CSRF token"
    return value
