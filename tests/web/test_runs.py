"""Journey 3: a run started through the API finishes failed; its page (where the
notifications' links land) shows the metrics, the chart and the failed delivery, and
"Redeliver" succeeds once the receiver is back."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Page, expect

from api.support import create_webhook, set_status, wait_deliveries
from conftest import Server
from loadbell.testing import RecordingReceiver
from web.conftest import sign_in_with_token

FINAL = {
    "requests": 15012,
    "rps": 50.04,
    "avg_ms": 245.7,
    "p95_ms": 612.3,
    "error_rate": 0.0312,
    "apdex": 0.81,
    "thresholds": [
        {"metric": "http_req_duration", "expression": "p(95)<500", "ok": False},
        {"metric": "http_req_failed", "expression": "rate<0.05", "ok": True},
    ],
}


async def test_failed_run_page_and_redeliver(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """Status timeline, metrics, thresholds, three charts, the failed notification, then a
    redelivery."""
    receiver = await RecordingReceiver().start()
    port = receiver.port
    await create_webhook(
        api, f"{receiver.url}/hook", events=["test.finished"], retry={"max_attempts": 1}
    )
    await receiver.stop()  # the receiver is down while the run finishes

    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    await set_status(api, run["id"], 2)
    for i, (rps, p95, errors) in enumerate([(20, 300, 0.0), (45, 420, 0.01), (52, 640, 0.05)]):
        r = await api.post(
            f"/runs/{run['id']}/reports",
            json={"metrics": {"rps": rps, "p95_ms": p95, "error_rate": errors, "vus": 10 * i}},
        )
        assert r.status_code == 201, r.text
        await asyncio.sleep(0.05)
    await set_status(api, run["id"], 3, result="failed", metrics=FINAL)
    [failed] = await wait_deliveries(
        api, lambda items: bool(items) and items[0]["status"] == "failed", run_id=run["id"]
    )

    # The link notifications carry (run.url = public URL + /runs/{id}) is this page.
    assert run["url"] == f"http://loadbell.test/runs/{run['id']}"
    await sign_in_with_token(page, app_server.token, f"/runs/{run['id']}")
    assert page.url.endswith(f"/runs/{run['id']}")
    await expect(page.locator("#run-status")).to_contain_text("Finished")
    await expect(page.locator("#run-result")).to_contain_text("failed")
    # The status timeline: every change the API recorded, in order, ending Running → Finished.
    recorded = (await api.get(f"/runs/{run['id']}")).json()["timeline"]
    assert [t["status"] for t in recorded][-2:] == [2, 3]
    entries = page.locator("ol.timeline li")
    await expect(entries).to_have_count(len(recorded))
    for entry, t in zip(await entries.all(), recorded, strict=True):
        await expect(entry).to_contain_text(f"{t['status']} {t['status_text']}")
        await expect(entry.locator("time")).to_contain_text("UTC")
    metrics = page.locator("#metrics")
    await expect(metrics).to_contain_text("15,012")
    await expect(metrics).to_contain_text("612.3 ms")
    await expect(metrics).to_contain_text("3.12 %")
    await expect(metrics.locator("table.thresholds")).to_contain_text("fail")
    charts = page.locator("#charts svg.chart")
    await expect(charts).to_have_count(3)
    await expect(charts.first.locator("polyline")).to_have_count(1)
    await expect(page.locator("#charts")).to_contain_text("Requests per second")
    notes = page.locator("#notifications")
    item = notes.locator(f"#delivery-{failed['id']}")
    await expect(item).to_contain_text("failed")
    await expect(item).to_contain_text("test.finished")

    async with RecordingReceiver(port=port) as back:
        await item.get_by_role("button", name="Redeliver").click()
        await expect(page.locator(".flash")).to_contain_text("being sent again")
        await back.wait_for(1)
        await wait_deliveries(
            api, lambda items: items[0]["status"] == "succeeded", run_id=run["id"]
        )
        await page.reload()
        await expect(item.locator(".badge.status-succeeded")).to_be_visible()
        await item.locator("summary").first.click()
        await expect(item.locator("table.attempts")).to_contain_text("200")
        await expect(item.locator("table.attempts")).to_contain_text("failed")
    assert back.requests[0].json()["event"] == "test.finished"
    assert back.requests[0].json()["load_test_run_id"] == run["id"]


async def test_run_page_shows_the_comparison(
    page: Page, app_server: Server, api: httpx.AsyncClient
) -> None:
    """A run slower than its baseline shows, beside its charts, each figure against the
    baseline run's with the change, the regressed ones marked, and a link to the baseline."""
    ids = []
    for p95 in (254.0, 312.0):
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "cmp"})).json()
        await set_status(api, run["id"], 2)
        await set_status(api, run["id"], 3, metrics={"p95_ms": p95, "avg_ms": 100.0})
        ids.append(run["id"])
    base, slow = ids
    await sign_in_with_token(page, app_server.token, f"/runs/{slow}")
    box = page.locator("#comparison")
    await expect(box.locator("#regressed")).to_contain_text("regressed")
    await expect(box.locator(f'a[href="/runs/{base}"]')).to_contain_text(f"#{base}")
    rows = box.locator("tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("312.0 ms")
    await expect(rows.first).to_contain_text("254.0 ms")
    await expect(rows.first).to_contain_text("+22.8 %")
    await expect(rows.first).to_contain_text("worse")
    await expect(rows.nth(1)).to_contain_text("ok")
    await expect(box.locator("#baseline-form")).to_contain_text(f"#{slow} (latest passed)")
    await page.goto(f"{app_server.url}/runs/{base}")
    await expect(page.locator("#comparison")).to_contain_text("No baseline")

    # Pin the first run from its page, then unpin it: the API sees both.
    await page.get_by_role("button", name="Pin this run as baseline").click()
    await expect(page.locator(".flash")).to_contain_text(f"Run #{base} is now the baseline")
    await expect(page.locator("#baseline-form")).to_contain_text("This run is the pinned baseline")
    lt_id = (await api.get(f"/runs/{base}")).json()["load_test_id"]
    r = await api.get(f"/load-tests/{lt_id}")
    assert r.json()["baseline"] == {"run_id": base, "pinned": True}
    await page.get_by_role("button", name="Unpin").click()
    await expect(page.locator(".flash")).to_contain_text("latest passed run again")
    r = await api.get(f"/load-tests/{lt_id}")
    assert r.json()["baseline"] == {"run_id": slow, "pinned": False}
