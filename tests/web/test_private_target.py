"""A webhook URL on a private, loopback or link-local address, on a server without
--allow-private-targets: the API saves it (the SSRF guard decides on each attempt), and the
Setup form saves it too, but never in silence: the page says deliveries will fail and how
to allow such targets (issue 14)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Page, expect

from conftest import Server
from loadbell.settings import Settings
from web.conftest import sign_in_with_token


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_targets": False})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",  # loopback
        "http://10.1.2.3/hook",  # private
        "http://[::ffff:169.254.169.254]/latest",  # link-local (metadata), IPv4-mapped
        "http://localhost:8080/hook",  # always this machine
    ],
)
async def test_a_private_target_is_saved_with_a_warning(
    page: Page, app_server: Server, api: httpx.AsyncClient, url: str
) -> None:
    """The channel is saved, as the API saves it, and its page warns that this server
    will refuse to deliver there, naming the address and the option that allows it."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.locator("#f-url").fill(url)
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page).to_have_url(re.compile(r"/integrations/\d+$"))
    assert len((await api.get("/channels")).json()["items"]) == 1

    warning = page.locator("#private-target")
    await expect(warning).to_contain_text("Deliveries will fail")
    await expect(warning).to_contain_text("--allow-private-targets")


async def test_a_public_target_gets_no_warning(page: Page, app_server: Server) -> None:
    """A URL on a public name or address is saved without the warning."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations/new?kind=webhook")
    await page.locator("#f-url").fill("https://hooks.example.com/hook")
    await page.get_by_role("button", name="Save Changes").click()
    await expect(page).to_have_url(re.compile(r"/integrations/\d+$"))
    await expect(page.locator(".flash")).to_contain_text("Changes saved")
    await expect(page.locator("#private-target")).to_have_count(0)
