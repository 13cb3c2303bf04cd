"""Journey 4 and the Members page: an owner invites a member (initial password shown
once); the member sees everything read-only, no setup or test buttons, and the server
refuses their direct POSTs with 403. Tokens are shown once."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Browser, Page, expect

from api.support import create_webhook
from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import csrf_of, new_page, sign_in_with_password, sign_in_with_token


async def invite(page: Page, name: str, email: str, role: str = "member") -> str:
    """Invite from the Members page; returns the initial password it shows once."""
    await page.goto("/orgs/1/members")
    form = page.locator("#invite-form")
    await form.get_by_label("Name").fill(name)
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Role").select_option(role)
    await form.get_by_role("button", name="Invite").click()
    password = await page.locator("#initial-password").inner_text()
    assert len(password) >= 12
    return password


async def test_member_sees_read_only_and_posts_are_refused(
    page: Page,
    browser: Browser,
    app_server: Server,
    api: httpx.AsyncClient,
    receiver: RecordingReceiver,
) -> None:
    """No Setup, Save or Test buttons for a member; direct POSTs answer 403."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    await sign_in_with_token(page, app_server.token)
    password = await invite(page, "Mia Member", "mia@example.com")
    await page.reload()
    await expect(page.locator("#initial-password")).to_have_count(0)  # shown once only

    member = await new_page(browser, app_server)
    try:
        await sign_in_with_password(member, "mia@example.com", password)
        await expect(member.get_by_role("heading", name="Integrations")).to_be_visible()
        await expect(member.get_by_role("link", name="Setup WebHook")).to_have_count(0)
        await expect(member.get_by_role("link", name="View")).to_have_count(1)
        await member.get_by_role("link", name="View").click()
        await expect(member.locator("#read-only")).to_be_visible()
        await expect(member.get_by_role("button", name="Save Changes")).to_have_count(0)
        await expect(member.get_by_role("button", name="Test Hook")).to_have_count(0)
        await expect(member.get_by_label("URL")).to_be_disabled()

        token = await csrf_of(member)
        refused = {
            f"/integrations/{channel['id']}": {"name": "taken over", "url": "http://x.test/"},
            f"/integrations/{channel['id']}/test": {},
            f"/integrations/{channel['id']}/delete": {},
            f"/integrations/{channel['id']}/projects/1": {"send_messages": "disabled"},
            "/orgs/1/integrations/new?kind=webhook": {"name": "mine", "url": "http://x.test/"},
            "/orgs/1/members/invite": {"name": "Eve", "email": "eve@example.com"},
            "/orgs/1/tokens": {"token_name": "mine", "token_role": "owner"},
        }
        for path, fields in refused.items():
            r = await member.request.post(path, form={"csrf": token, **fields})
            assert r.status == 403, (path, r.status, await r.text())
            assert "owners and admins" in await r.text() or "only an owner" in await r.text()
        r = await member.request.get("/orgs/1/integrations/new?kind=webhook")
        assert r.status == 403
        # Without the CSRF token even a well-formed POST is refused.
        r = await member.request.post(f"/integrations/{channel['id']}/test", form={})
        assert r.status == 403 and "CSRF" in await r.text()
    finally:
        await member.context.close()

    assert receiver.requests == []  # no test hook went out
    after = (await api.get(f"/channels/{channel['id']}")).json()
    assert after["name"] == channel["name"] and after["config"] == channel["config"]


async def test_tokens_are_shown_once_and_roles_change(page: Page, app_server: Server) -> None:
    """A created token works against the API; role changes stick; the last owner stays."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/members")
    form = page.locator("#token-form")
    await form.get_by_label("Name").fill("CI pipeline")
    await form.get_by_label("Role").select_option("member")
    await form.get_by_role("button", name="Create token").click()
    token = await page.locator("#token-value").inner_text()
    async with httpx.AsyncClient(
        base_url=f"{app_server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        assert (await client.get("/projects")).status_code == 200
    await page.goto("/orgs/1/members")
    assert token not in await page.content()
    await expect(page.locator("table.tokens")).to_contain_text("CI pipeline")

    await invite(page, "Ada Admin", "ada@example.com")
    row = page.locator("table.members tr", has_text="Ada Admin")
    await row.get_by_label("Role of Ada Admin").select_option("admin")
    await row.get_by_role("button", name="Change").click()
    await expect(page.locator(".flash")).to_contain_text("admin")
    owner_row = page.locator("table.members tr", has_text="owner (you)")
    await owner_row.get_by_role("combobox").select_option("member")
    await owner_row.get_by_role("button", name="Change").click()
    await expect(page.locator(".flash")).to_contain_text("last owner")


async def test_members_are_removed_but_the_last_owner_stays(page: Page, app_server: Server) -> None:
    """Removing a member takes them off the list and revokes their token for the
    organization; the last owner cannot be removed."""
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await sign_in_with_token(page, app_server.token, "/orgs/1/members")
    await invite(page, "Rita Removed", "rita@example.com")
    form = page.locator("#token-form")
    await form.get_by_label("Name").fill("Rita's CI")
    await form.get_by_role("button", name="Create token").click()
    token = await page.locator("#token-value").inner_text()

    # A token's service user is listed with its token, not among people: revoking the
    # token ends its access.
    await expect(page.locator("table.members")).not_to_contain_text("Rita's CI")
    row = page.locator("table.tokens tr", has_text="Rita's CI")
    await row.get_by_role("button", name="Revoke").click()
    await expect(page.locator(".flash")).to_contain_text("revoked")
    await expect(row).to_contain_text("revoked")
    async with app_server.client(token) as client:
        assert (await client.get("/projects")).status_code == 401

    row = page.locator("table.members tr", has_text="Rita Removed")
    await row.get_by_role("button", name="Remove Rita Removed").click()
    await expect(page.locator("table.members")).not_to_contain_text("Rita Removed")

    owner_row = page.locator("table.members tr", has_text="owner (you)")
    await owner_row.get_by_role("button", name="Remove").click()
    await expect(page.locator(".flash")).to_contain_text("last owner")
    await expect(page.locator("table.members")).to_contain_text("(you)")


async def test_member_previews_the_saved_settings(
    page: Page,
    browser: Browser,
    app_server: Server,
    api: httpx.AsyncClient,
    receiver: RecordingReceiver,
) -> None:
    """Read-only includes the preview: a member's "Preview" and live preview render the
    channel as saved (its format), and nothing is sent."""
    url = f"{receiver.url}/hook"
    channel = await create_webhook(api, url, config={"url": url, "format": "loadmance"})
    await sign_in_with_token(page, app_server.token)
    password = await invite(page, "Mia Member", "mia@example.com")

    member = await new_page(browser, app_server)
    try:
        await sign_in_with_password(member, "mia@example.com", password)
        await member.goto(f"/integrations/{channel['id']}")
        preview = member.locator("#preview-body")
        await expect(preview).to_contain_text('"type":"notification"')  # live, as saved
        await member.get_by_label("Event", exact=True).select_option("test.started")
        async with member.expect_navigation() as shown:
            await member.get_by_role("button", name="Preview").click()
        answer = await shown.value
        assert answer is not None and answer.status == 200
        await expect(member.locator("#read-only")).to_be_visible()
        await expect(preview).to_contain_text('"type":"notification"')
        await expect(preview).to_contain_text("TEST_STARTED")
        await expect(member.get_by_label("Event", exact=True)).to_have_value("test.started")
    finally:
        await member.context.close()
    assert receiver.requests == []


async def test_refused_token_keeps_its_name(page: Page, app_server: Server) -> None:
    """A token name that is too long is refused next to the field, and stays as typed."""
    await sign_in_with_token(page, app_server.token, "/orgs/1/members")
    form = page.locator("#token-form")
    await form.get_by_label("Name").fill("x" * 201)
    await form.get_by_label("Role").select_option("admin")
    await form.get_by_role("button", name="Create token").click()
    await expect(form.locator(".field-error")).to_contain_text("1 to 200 characters")
    await expect(form.get_by_label("Name")).to_have_value("x" * 201)
    await expect(form.get_by_label("Role")).to_have_value("admin")
    await expect(page.locator("#token-value")).to_have_count(0)
