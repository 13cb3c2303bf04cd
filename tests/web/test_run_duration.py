"""The run page shows one duration, the load test's own where it is known, and the Apdex
with its T (issue 14)."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from api.support import set_status
from conftest import Server
from web.conftest import sign_in_with_token


async def test_run_page_shows_the_load_tests_own_duration(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """A 120 s test whose client reported at the end: 2 min, said to come from the test,
    and no second duration among the figures; the Apdex carries its T."""
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    await set_status(api, run["id"], 2)
    metrics = {"requests": 100, "apdex": 0.85, "apdex_t_ms": 500, "duration_s": 120.0}
    await set_status(api, run["id"], 3, result="passed", metrics=metrics)
    wall = (await api.get(f"/runs/{run['id']}")).json()["duration_s"]
    assert wall < 60  # the status times: how quickly this test sent its changes

    await sign_in_with_token(page, app_server.token, f"/runs/{run['id']}")
    await expect(page.locator("#run-duration")).to_have_text(
        "duration 2 min 00 s (reported by the load test)"
    )
    figures = page.locator("#metrics dl.pairs")
    await expect(figures).to_contain_text("0.85 (T = 500 ms)")
    await expect(figures).not_to_contain_text("duration")
    await expect(figures).not_to_contain_text("120")
    await page.goto("/projects/1/runs")
    listed = page.locator("table.runs tr", has_text=f"#{run['id']}")
    await expect(listed.locator("td.duration")).to_have_text("2 min 00 s")
    await page.goto(f"/runs/{run['id']}")

    # Without the test's own figure, the status times show, and say so.
    other = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    await set_status(api, other["id"], 2)
    await set_status(api, other["id"], 3, result="passed", metrics={"requests": 5})
    await page.goto(f"/runs/{other['id']}")
    await expect(page.locator("#run-duration")).to_contain_text("(from the status times)")
