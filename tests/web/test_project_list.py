"""The project's Integrations list shows each organization channel as the project sees it:
the values in effect there, each marked when the project overrides it (issue 14, item 5)."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from api.support import create_webhook
from conftest import Server
from loadbell.security.masking import mask_url
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token


async def test_project_list_shows_the_values_in_effect(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    async with RecordingReceiver() as org_hook, RecordingReceiver() as project_hook:
        org_url, project_url = f"{org_hook.url}/org", f"{project_hook.url}/project"
        channel = (await create_webhook(api, org_url, name="Team hook"))["id"]
        r = await api.put(f"/channels/{channel}/overrides/1", json={"config": {"url": project_url}})
        assert r.status_code == 200, r.text

        await sign_in_with_token(page, app_server.token, "/projects/1/integrations")
        row = page.locator("#kind-webhook li", has_text="Team hook")
        await expect(row).to_contain_text("Inherited, with project overrides")
        await expect(row).to_contain_text(mask_url(project_url))
        await expect(row).not_to_contain_text(mask_url(org_url))
        overridden = row.locator(".summary.overridden")
        await expect(overridden).to_have_count(1)
        await expect(overridden).to_contain_text(mask_url(project_url))
        await expect(overridden).to_contain_text("overridden here")
        assert project_url not in await page.content()  # the secret URL stays masked

        # Only "Send messages" overridden: the URL is the organization's, and not marked.
        r = await api.put(f"/channels/{channel}/overrides/1", json={"enabled": True})
        assert r.status_code == 200, r.text
        await page.reload()
        await expect(row).to_contain_text(mask_url(org_url))
        await expect(overridden).to_have_count(0)

        # The organization's own list shows the organization's values, unmarked.
        await page.goto("/orgs/1/integrations")
        await expect(row).to_contain_text(mask_url(org_url))
        await expect(overridden).to_have_count(0)
