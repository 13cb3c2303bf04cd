"""The run page mutes its load test for an hour, a day or a week (post/redirect/get), shows
the mute in force with its end and an Unmute button, and shows members no buttons."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from api.support import all_done, create_webhook, new_run, scoped_token, set_status, wait_deliveries
from conftest import Server
from loadbell.domain.roles import Role
from loadbell.testing import RecordingReceiver
from web.conftest import csrf_of, new_page, sign_in_with_token


@pytest.mark.parametrize(
    ("button", "length"),
    [
        ("Mute for 1 hour", timedelta(hours=1)),
        ("Mute for 1 day", timedelta(days=1)),
        ("Mute for 1 week", timedelta(weeks=1)),
    ],
)
async def test_mute_from_the_run_page_then_unmute(
    page: Page,
    app_server: Server,
    api: httpx.AsyncClient,
    receiver: RecordingReceiver,
    button: str,
    length: timedelta,
) -> None:
    """Each button mutes the run's load test until that long from now: the page lands back
    on the run with the end time and an Unmute button, reloading makes no second mute, the
    next run's test.finished is suppressed; Unmute lets the run after it through."""
    channel = await create_webhook(api, f"{receiver.url}/hook")
    run = await new_run(api, name="nightly")
    await sign_in_with_token(page, app_server.token, f"/runs/{run['id']}")
    await expect(page.locator("#mutes")).to_contain_text("Not muted")

    before = datetime.now(UTC)
    await page.get_by_label("Reason").fill("flaky staging")
    await page.get_by_role("button", name=button).click()
    await expect(page).to_have_url(re.compile(rf"/runs/{run['id']}(#mutes)?$"))
    await expect(page.locator(".flash")).to_contain_text("nightly is muted until")
    [mute] = (await api.get("/mutes")).json()["items"]
    until = datetime.fromisoformat(mute["until"])
    assert before + length <= until <= datetime.now(UTC) + length
    assert mute["load_test_id"] == run["load_test_id"] and mute["reason"] == "flaky staging"
    shown = page.locator(f"#mute-{mute['id']}")
    await expect(shown).to_contain_text(until.strftime("%Y-%m-%d %H:%M:%S UTC"))
    await expect(shown).to_contain_text("this load test")
    await expect(page.locator("#muted")).to_be_visible()
    await page.reload()
    assert len((await api.get("/mutes")).json()["items"]) == 1

    muted = await new_run(api, name="nightly")
    await set_status(api, muted["id"], 3, result="failed")
    [d] = await wait_deliveries(api, all_done, run_id=muted["id"], channel_id=channel["id"])
    assert (d["status"], d["reason"]) == ("suppressed", "muted")

    await shown.get_by_role("button", name="Unmute").click()
    await expect(page.locator(".flash")).to_contain_text("Unmuted")
    await expect(page.locator("#mutes")).to_contain_text("Not muted")
    assert (await api.get("/mutes")).json()["items"] == []
    sent = await new_run(api, name="nightly")
    await set_status(api, sent["id"], 3, result="failed")
    [d] = await wait_deliveries(api, all_done, run_id=sent["id"], channel_id=channel["id"])
    assert d["status"] == "succeeded"


async def test_a_member_sees_the_mute_but_no_buttons(
    browser: Browser, app_server: Server, api: httpx.AsyncClient
) -> None:
    """A member sees the mute in force and its end, but no Mute or Unmute button; posting
    the forms directly is a 403 and changes nothing."""
    run = await new_run(api, name="nightly")
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = await api.post(
        "/mutes",
        json={"organization_id": 1, "project_id": 1, "until": until, "reason": "freeze"},
    )
    assert r.status_code == 201, r.text
    mute = r.json()
    member = await new_page(browser, app_server)
    try:
        token = await scoped_token(app_server.settings, 1, Role.MEMBER)
        await sign_in_with_token(member, token, f"/runs/{run['id']}")
        box = member.locator("#mutes")
        await expect(box.locator(f"#mute-{mute['id']}")).to_contain_text("the whole project")
        await expect(box).to_contain_text("freeze")
        await expect(box.get_by_role("button")).to_have_count(0)
        await expect(member.locator("#mute-form")).to_have_count(0)
        csrf = await csrf_of(member)  # the baseline form's, the same for the session
        for path, fields in (
            (f"/runs/{run['id']}/mute", {"duration": "1h"}),
            (f"/runs/{run['id']}/unmute", {"mute_id": str(mute["id"])}),
        ):
            answer = await member.request.post(path, form={"csrf": csrf, **fields})
            assert answer.status == 403, path
    finally:
        await member.context.close()
    assert [m["id"] for m in (await api.get("/mutes")).json()["items"]] == [mute["id"]]
