"""Noise control end to end: notify_on, quiet hours (hold and drop) and throttles, with a
real server and worker, a real receiver on 127.0.0.1, on SQLite and PostgreSQL. Quiet hours
and throttles read ``loadbell.clock``, which these tests move."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.support import (
    all_done,
    assert_error,
    create_webhook,
    list_deliveries,
    new_run,
    set_status,
    stored_rows,
    wait_deliveries,
)
from conftest import Server
from loadbell import clock
from loadbell.testing import RecordingReceiver

# Monday 2026-01-05, 23:00 in Berlin (winter time, UTC+1): inside a 22:00-07:00 window
# that ends on Tuesday at 07:00 Berlin, 06:00 UTC.
MONDAY_NIGHT = datetime(2026, 1, 5, 22, 0, tzinfo=UTC).timestamp()
WINDOW_END = "2026-01-06T06:00:00+00:00"
TUESDAY_MORNING = datetime(2026, 1, 6, 6, 0, 1, tzinfo=UTC).timestamp()
NIGHTS = {
    "timezone": "Europe/Berlin",
    "from": "22:00",
    "to": "07:00",
    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "action": "hold",
}


@dataclass
class FakeClock:
    now: float

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    """loadbell's clock for this test, in the API and the worker of the in-process server."""
    fake = FakeClock(MONDAY_NIGHT)
    with clock.use(fake):
        yield fake


async def _channel(
    api: httpx.AsyncClient,
    rx: RecordingReceiver,
    events: list[str],
    fmt: str = "loadimpact",
    **config: Any,
) -> int:
    channel = await create_webhook(
        api,
        f"{rx.url}/hook",
        events=events,
        config={"url": f"{rx.url}/hook", "format": fmt, **config},
    )
    return int(channel["id"])


async def _finished_run(api: httpx.AsyncClient, result: str, name: str = "monitor") -> int:
    run = await new_run(api, name=name, trigger="scheduled")
    await set_status(api, run["id"], 2)
    await set_status(api, run["id"], 3, result=result)
    return int(run["id"])


async def _sent_runs(
    api: httpx.AsyncClient, rx: RecordingReceiver, channel_id: int
) -> list[tuple[str, int]]:
    """Once every delivery of the channel has ended: (event, run) of those that went out,
    checked against what the receiver got."""
    items = await wait_deliveries(api, all_done, channel_id=channel_id)
    sent = sorted((d["event_type"], d["run_id"]) for d in items if d["status"] == "succeeded")
    assert len(rx.requests) == len(sent), (rx.requests, items)
    return sent


async def test_result_change_sends_the_failure_and_the_recovery(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """notify_on result_change: runs pass, fail, fail, fail, pass send two test.finished
    (the first failure, the recovery); every other delivery is suppressed with a reason,
    test.started included (decision D49)."""
    cid = await _channel(
        api,
        receiver,
        ["test.started", "test.finished"],
        notify_on={"mode": "result_change"},
    )
    runs = [await _finished_run(api, r) for r in ("passed", "failed", "failed", "failed", "passed")]
    sent = await _sent_runs(api, receiver, cid)
    assert sent == [("test.finished", runs[1]), ("test.finished", runs[4])]
    suppressed = await list_deliveries(api, channel_id=cid, status="suppressed")
    assert len(suppressed) == 8  # five test.started, three test.finished
    assert {d["reason"] for d in suppressed} == {"notify_on"}
    assert {d["event_type"] for d in suppressed} == {"test.started", "test.finished"}


async def test_consecutive_failures_sends_the_nth_failure_then_the_recovery(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """notify_on consecutive_failures count 2: runs fail, fail, fail, pass, fail send the
    second failure and the recovery; the last failure starts a new count."""
    cid = await _channel(
        api, receiver, ["test.finished"], notify_on={"mode": "consecutive_failures", "count": 2}
    )
    runs = [await _finished_run(api, r) for r in ("failed", "failed", "failed", "passed", "failed")]
    sent = await _sent_runs(api, receiver, cid)
    assert sent == [("test.finished", runs[1]), ("test.finished", runs[3])]


async def test_regressed_follows_its_runs_finished_under_result_change(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Under result_change test.regressed goes out only with its run's test.finished: a
    passed run slower than the last is kept quiet, a failed slower one sends both."""
    cid = await _channel(
        api,
        receiver,
        ["test.finished", "test.regressed"],
        "loadmance",  # a format that can express test.regressed
        notify_on={"mode": "result_change"},
    )
    fast = {"p95_ms": 100.0, "avg_ms": 50.0, "error_rate": 0.0, "apdex": 0.99, "rps": 100.0}

    async def run(result: str, p95: float) -> int:
        created = await new_run(api)
        await set_status(api, created["id"], 2)
        await set_status(api, created["id"], 3, result=result, metrics={**fast, "p95_ms": p95})
        return int(created["id"])

    await run("passed", 100.0)  # the baseline; a first pass is quiet
    slower = await run("passed", 200.0)  # regressed, but the result did not change
    failed = await run("failed", 400.0)  # regressed against the last passed run, and failed
    sent = await _sent_runs(api, receiver, cid)
    assert sent == [("test.finished", failed), ("test.regressed", failed)]
    quiet = await list_deliveries(api, channel_id=cid, status="suppressed")
    assert ("test.regressed", slower) in {(d["event_type"], d["run_id"]) for d in quiet}
    assert {d["reason"] for d in quiet} == {"notify_on"}


async def test_notify_on_is_judged_per_load_test(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Each load test is judged against its own previous runs: a failure of another load
    test does not make this one's pass a recovery."""
    cid = await _channel(api, receiver, ["test.finished"], notify_on={"mode": "result_change"})
    other = await _finished_run(api, "failed", name="other")
    await _finished_run(api, "passed", name="monitor")  # its first run, passed: silent
    sent = await _sent_runs(api, receiver, cid)
    assert sent == [("test.finished", other)]


async def test_quiet_hours_hold_sends_when_the_window_ends(
    api: httpx.AsyncClient, receiver: RecordingReceiver, fake_clock: FakeClock
) -> None:
    """quiet_hours hold: a delivery made in the window waits as held until the window's
    end by loadbell's clock, then goes out; a held delivery does not hold back the next
    one of its run (the order key counts pending deliveries only)."""
    cid = await _channel(api, receiver, ["test.started", "test.finished"], quiet_hours=dict(NIGHTS))
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    [held] = await list_deliveries(api, channel_id=cid)
    assert held["status"] == "held" and held["reason"] == "quiet_hours"
    assert held["next_attempt_at"] == WINDOW_END
    assert [d["id"] for d in await list_deliveries(api, status="held")] == [held["id"]]

    # The worker polls each second: by the real clock the window ended months ago, so a
    # worker reading the real clock would send it now.
    await asyncio.sleep(3)
    assert receiver.requests == []
    [still] = await list_deliveries(api, channel_id=cid)
    assert still["status"] == "held"

    # Quiet hours off, still in the night: the run's next event goes out at once, ahead
    # of the held one.
    r = await api.patch(f"/channels/{cid}", json={"config": {"quiet_hours": None}})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["quiet_hours"] is None
    await set_status(api, run["id"], 3)
    await receiver.wait_for(1, timeout=20)
    finished, started = await wait_deliveries(  # newest first
        api, lambda items: items[0]["status"] != "pending", channel_id=cid, timeout=20
    )
    assert (finished["event_type"], finished["status"]) == ("test.finished", "succeeded")
    assert (started["event_type"], started["status"]) == ("test.started", "held")

    fake_clock.now = TUESDAY_MORNING
    await receiver.wait_for(2, timeout=20)
    items = await wait_deliveries(api, all_done, channel_id=cid, timeout=20)
    by_event = {d["event_type"]: d for d in items}
    assert by_event["test.started"]["status"] == "succeeded"
    # Its reason stays: the log shows that it waited for quiet hours.
    assert by_event["test.started"]["reason"] == "quiet_hours"
    assert by_event["test.finished"]["reason"] is None


async def test_quiet_hours_drop_suppresses(
    api: httpx.AsyncClient, receiver: RecordingReceiver, fake_clock: FakeClock
) -> None:
    """quiet_hours drop: a delivery made in the window ends suppressed; after the window,
    deliveries go out."""
    cid = await _channel(
        api, receiver, ["test.started", "test.finished"], quiet_hours={**NIGHTS, "action": "drop"}
    )
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    [dropped] = await list_deliveries(api, channel_id=cid)
    assert (dropped["status"], dropped["reason"]) == ("suppressed", "quiet_hours")

    fake_clock.now = TUESDAY_MORNING
    await set_status(api, run["id"], 3)
    sent = await _sent_runs(api, receiver, cid)
    assert sent == [("test.finished", run["id"])]


async def test_throttle_sends_one_report_per_window_per_run(
    api: httpx.AsyncClient, receiver: RecordingReceiver, fake_clock: FakeClock
) -> None:
    """throttle {"test.report_intermediate": 300}: one intermediate report per 300 s of
    loadbell's clock per run; the others are suppressed with reason throttle."""
    cid = await _channel(
        api,
        receiver,
        ["test.report_intermediate"],
        "template",  # loadimpact and loadmance have no intermediate reports
        template='{"event": {{ event | tojson }}}',
        throttle={"test.report_intermediate": 300},
    )

    async def report(run_id: int) -> None:
        r = await api.post(f"/runs/{run_id}/reports", json={"metrics": {"requests": 1}})
        assert r.status_code == 201, r.text

    one = await new_run(api)
    await set_status(api, one["id"], 2)
    for _ in range(3):
        await report(one["id"])  # the first goes, two suppressed
    fake_clock.now += 299
    await report(one["id"])  # still within 300 s of the one sent
    fake_clock.now += 2
    await report(one["id"])  # 301 s after it: goes
    two = await new_run(api)
    await set_status(api, two["id"], 2)
    await report(two["id"])  # another run counts on its own

    sent = await _sent_runs(api, receiver, cid)
    assert sent == [
        ("test.report_intermediate", one["id"]),
        ("test.report_intermediate", one["id"]),
        ("test.report_intermediate", two["id"]),
    ]
    suppressed = await list_deliveries(api, channel_id=cid, status="suppressed")
    assert [d["reason"] for d in suppressed] == ["throttle"] * 3


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"quiet_hours": {**NIGHTS, "timezone": "Berlin"}}, "config.quiet_hours.timezone"),
        ({"quiet_hours": {**NIGHTS, "days": ["mo"]}}, "config.quiet_hours.days[0]"),
        ({"notify_on": {"mode": "on_change"}}, "config.notify_on.mode"),
        (
            {"throttle": {"test.report_intermediate": -5}},
            "config.throttle.test.report_intermediate",
        ),
        ({"throttle": {"load_test.created": 60}}, "config.throttle.load_test.created"),
    ],
)
async def test_bad_settings_are_refused_naming_the_field(
    app_server: Server,
    api: httpx.AsyncClient,
    receiver: RecordingReceiver,
    config: dict[str, Any],
    field: str,
) -> None:
    """A bad noise setting is a 422 naming the field, on any kind, and stores nothing."""
    before = await stored_rows(app_server.settings)
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "discord",
            "name": "chat",
            "config": {"url": f"{receiver.url}/api/webhooks/1/x", **config},
        },
    )
    body = assert_error(r, 422, field)
    assert "use" in body["message"] or "must" in body["message"]
    assert await stored_rows(app_server.settings) == before


async def test_an_unknown_key_names_the_keys_every_kind_takes(api: httpx.AsyncClient) -> None:
    """A misspelt noise key is refused with the kind's keys and the common ones, so the
    caller sees where notify_on and friends went."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "slack",
            "name": "chat",
            "config": {"webhook_url": "http://127.0.0.1:9/h", "notifyon": {"mode": "every_run"}},
        },
    )
    body = assert_error(r, 422, "config.notifyon")
    assert "slack takes webhook_url" in body["message"], body
    assert "every kind also takes auto_disable, notify_on, quiet_hours, throttle" in body["message"]


async def test_project_override_with_value_level_inheritance(
    api: httpx.AsyncClient, receiver: RecordingReceiver, fake_clock: FakeClock
) -> None:
    """A project overrides noise settings like any config value: its notify_on applies to
    its runs, ``false`` turns the organization's quiet hours off, and the effective view
    says where each value came from."""
    cid = await _channel(api, receiver, ["test.finished"], quiet_hours={**NIGHTS, "action": "drop"})
    r = await api.put(
        f"/channels/{cid}/overrides/1",
        json={"config": {"notify_on": {"mode": "result_change"}, "quiet_hours": False}},
    )
    assert r.status_code == 200, r.text
    eff = (await api.get(f"/channels/{cid}/effective", params={"project_id": 1})).json()
    assert eff["config"]["notify_on"] == {"mode": "result_change"}
    assert eff["config"]["quiet_hours"] is None  # off, as the project says
    assert eff["config"]["throttle"] == {}
    assert eff["sources"]["notify_on"] == "project"
    assert eff["sources"]["quiet_hours"] == "project"
    assert eff["sources"]["throttle"] == "default"
    org = (await api.get(f"/channels/{cid}/effective")).json()
    assert org["config"]["quiet_hours"]["action"] == "drop"
    assert org["sources"]["quiet_hours"] == "organization"

    # In the night, for project 1: no quiet hours; result_change keeps a first pass quiet
    # and sends the first failure.
    await _finished_run(api, "passed")
    failed = await _finished_run(api, "failed")
    items = await wait_deliveries(api, all_done, channel_id=cid)
    assert [(d["status"], d["reason"]) for d in items] == [
        ("succeeded", None),
        ("suppressed", "notify_on"),
    ]
    assert items[0]["run_id"] == failed


async def test_deliveries_page_shows_suppressed_and_held(
    app_server: Server,
    api: httpx.AsyncClient,
    receiver: RecordingReceiver,
    fake_clock: FakeClock,
) -> None:
    """The web delivery log shows each status with its reason in words."""
    cid = await _channel(api, receiver, ["test.started", "test.finished"], quiet_hours=NIGHTS)
    run = await new_run(api)
    await set_status(api, run["id"], 2)  # held
    await api.patch(
        f"/channels/{cid}", json={"config": {"quiet_hours": {**NIGHTS, "action": "drop"}}}
    )
    await set_status(api, run["id"], 3)  # suppressed
    web = await _signed_in(app_server)
    try:
        for status, words in (
            ("held", "held for quiet hours until"),
            ("suppressed", "not sent: quiet hours"),
        ):
            r = await web.get("/orgs/1/deliveries", params={"status": status})
            assert r.status_code == 200
            assert words in r.text, r.text
            assert f'badge status-{status}">{status}<' in r.text
    finally:
        await web.aclose()


async def _signed_in(server: Server) -> httpx.AsyncClient:
    """A browser-like client (cookies, forms) signed in with the server's owner token."""
    web = httpx.AsyncClient(base_url=server.url, timeout=30.0)
    page = await web.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None, page.text
    r = await web.post(
        "/login", data={"method": "token", "token": server.token, "csrf": csrf.group(1)}
    )
    assert r.status_code in (302, 303), r.text
    return web


async def test_project_page_keeps_the_overrides_noise_settings(
    app_server: Server, api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Saving a project's settings page (which has no noise fields) keeps the override's
    notify_on, and its quiet hours turned off."""
    cid = await _channel(api, receiver, ["test.finished"], quiet_hours=NIGHTS)
    r = await api.put(
        f"/channels/{cid}/overrides/1",
        json={"config": {"notify_on": {"mode": "result_change"}, "quiet_hours": False}},
    )
    assert r.status_code == 200, r.text
    web = await _signed_in(app_server)
    try:
        here = f"/integrations/{cid}/projects/1"
        page = await web.get(here)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None, page.text
        r = await web.post(
            here, data={"csrf": csrf.group(1), "action": "save", "send_messages": "inherit"}
        )
        assert r.status_code in (302, 303), r.text
    finally:
        await web.aclose()
    eff = (await api.get(f"/channels/{cid}/effective", params={"project_id": 1})).json()
    assert eff["config"]["notify_on"] == {"mode": "result_change"}
    assert eff["config"]["quiet_hours"] is None
    assert eff["sources"]["notify_on"] == eff["sources"]["quiet_hours"] == "project"
