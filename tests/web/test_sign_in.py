"""Signing in: with the first-run API token, then with the email and password set under
"Your account"; errors keep the email; the session cookie is HttpOnly and SameSite=Lax,
and Secure behind https; links to a run page come back to it after signing in."""

from __future__ import annotations

import asyncio
import os

from playwright.async_api import Page, expect

from conftest import LOADBELL_BIN, Server, worker_env
from loadbell.settings import Settings
from loadbell.web.session import COOKIE, Session, Sessions
from web.conftest import sign_in_with_password, sign_in_with_token


async def test_token_then_password(page: Page, app_server: Server) -> None:
    """The first owner signs in with the token, sets a password, and signs in with it."""
    await page.goto("/orgs/1/integrations")
    assert "/login?next=" in page.url
    await page.get_by_label("API token").fill("lb_not-a-token")
    await page.get_by_role("button", name="Sign in with token").click()
    await expect(page.locator("#login-error")).to_contain_text("not valid")

    await sign_in_with_token(page, app_server.token)
    await page.goto("/account")
    await page.get_by_label("Email (you sign in with it)").fill("owner@example.com")
    await page.get_by_label("New password", exact=True).fill("short")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".field-error")).to_contain_text("at least 10 characters")
    await expect(page.get_by_label("Email (you sign in with it)")).to_have_value(
        "owner@example.com"
    )
    await page.get_by_label("New password", exact=True).fill("correct horse battery")
    await page.get_by_label("New password again").fill("correct horse battery")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_contain_text("Password")

    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies[COOKIE]["httpOnly"] is True
    assert cookies[COOKIE]["sameSite"] == "Lax"
    assert cookies[COOKIE]["secure"] is False  # http://loadbell.test

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in to loadbell")).to_be_visible()
    await page.get_by_label("Email").fill("owner@example.com")
    await page.get_by_label("Password", exact=True).fill("wrong password!")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#login-error")).to_contain_text("Wrong email or password")
    await expect(page.get_by_label("Email")).to_have_value("owner@example.com")
    await sign_in_with_password(
        page, "owner@example.com", "correct horse battery", "/orgs/1/integrations"
    )
    await expect(page.get_by_role("heading", name="Integrations")).to_be_visible()


async def test_sign_in_returns_to_the_linked_page(page: Page, app_server: Server) -> None:
    """A notification's link (a run page) survives the detour through sign-in."""
    await page.goto("/orgs/1/members")
    await page.get_by_label("API token").fill(app_server.token)
    await page.get_by_role("button", name="Sign in with token").click()
    await expect(page.get_by_role("heading", name="Members")).to_be_visible()


def test_cookie_is_secure_behind_https(tmp_path: object) -> None:
    """With an https public URL the session cookie carries Secure."""
    from starlette.responses import Response

    settings = Settings(secret_key="k", public_url="https://bell.example.com")
    response = Response()
    Sessions(settings).store(response, Session.anonymous())
    header = response.headers["set-cookie"].lower()
    assert "secure" in header and "httponly" in header and "samesite=lax" in header


def test_tampered_cookie_is_ignored() -> None:
    """A cookie whose signature does not match is a signed-out visitor."""
    sessions = Sessions(Settings(secret_key="k"))
    other = Sessions(Settings(secret_key="another key"))
    from starlette.responses import Response

    response = Response()
    other.store(response, Session.anonymous().signed_in(1, token_id=None, password="x"))
    raw = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert other.load(raw) is not None
    assert sessions.load(raw) is None


async def test_cli_sets_the_first_owners_password(page: Page, app_server: Server) -> None:
    """`loadbell user set-password` gives the first-run owner an email sign-in."""
    child = await asyncio.create_subprocess_exec(
        LOADBELL_BIN,
        "user",
        "set-password",
        "--email",
        "Boss@Example.com",
        "--password-stdin",
        env={**worker_env(app_server.settings), "PATH": os.environ.get("PATH", "")},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(child.communicate(b"a long enough password\n"), 60)
    assert child.returncode == 0, err.decode()
    assert b"signs in as boss@example.com" in err
    await sign_in_with_password(page, "boss@example.com", "a long enough password")
    await expect(page.get_by_role("heading", name="Integrations")).to_be_visible()


async def test_switcher_waits_for_go_after_a_key(page: Page, app_server: Server) -> None:
    """Arrow keys on the project switcher do not leave the page; "Go" does; a choice made
    without a key (the pointer) still switches at once."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/integrations")
    project = page.locator("form.switcher select[name=project]")
    await project.focus()
    await page.keyboard.press("ArrowDown")
    await expect(project).to_have_value("1")
    await page.wait_for_timeout(500)  # room for a navigation, if one were started
    assert page.url.endswith("/orgs/1/integrations")

    await page.keyboard.press("Tab")
    go = page.get_by_role("button", name="Go", exact=True)
    await expect(go).to_be_focused()
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/projects/1/integrations")
    await expect(page.locator(".side .scope")).to_contain_text("Project")

    await page.locator("form.switcher select[name=project]").select_option("")
    await page.wait_for_url("**/orgs/1/integrations")

    # A project that is not the chosen organization's (a stale list) gives way to it.
    await page.goto("/switch?org=1&project=999&section=runs")
    assert page.url.endswith("/orgs/1/runs")
