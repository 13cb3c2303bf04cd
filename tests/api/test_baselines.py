"""Baselines and regressions end to end: a real server and worker, real receivers (a
Loadmance webhook, a Slack-like webhook, an SMTP server), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from channels.test_email import SmtpServer, smtp  # noqa: F401  (smtp: the fixture)
from loadbell.testing import RecordingReceiver
from loadbell.testing.chat import FakeSlackWebhook

from .support import assert_error, create_webhook, list_events, new_run, set_status, wait_deliveries

FAST = {"p95_ms": 254.0, "avg_ms": 120.0, "error_rate": 0.01, "apdex": 0.95, "rps": 100.0}
# p95 +22.8 % (over 20 %), avg +10 %, errors +0.5 pp, apdex -0.02, rps -10 %: only p95.
SLOW_P95 = {"p95_ms": 312.0, "avg_ms": 132.0, "error_rate": 0.015, "apdex": 0.93, "rps": 90.0}


async def finished_run(
    api: httpx.AsyncClient, metrics: dict[str, Any], result: str = "passed", name: str = "checkout"
) -> dict[str, Any]:
    """A run of load test ``name`` that starts and finishes with ``metrics``."""
    run = await new_run(api, name=name)
    await set_status(api, run["id"], 2)
    return dict(await set_status(api, run["id"], 3, result=result, metrics=metrics))


async def load_test(api: httpx.AsyncClient, load_test_id: int) -> dict[str, Any]:
    r = await api.get(f"/load-tests/{load_test_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_requests(rx: RecordingReceiver, count: int, timeout: float = 15.0) -> list[Any]:
    await rx.wait_for(count, timeout)
    return [r.json() for r in rx.requests]


async def test_default_baseline_is_the_latest_passed_run(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """The first run has no baseline; later runs compare with the latest passed run (a
    failed run is never the default), and a regression is a TEST_REGRESSED warning sent
    after the run's TEST_FINISH/TEST_FAILED."""
    await create_webhook(api, receiver.url, config={"url": receiver.url, "format": "loadmance"})
    first = await finished_run(api, FAST)
    assert first["comparison"] is None
    lt = await load_test(api, first["load_test_id"])
    assert lt["baseline"] == {"run_id": first["id"], "pinned": False}
    assert lt["regression"] == {
        "p95_pct": 20.0,
        "avg_pct": 20.0,
        "error_rate_pp": 1.0,
        "apdex_drop": 0.05,
        "rps_pct": 20.0,
    }
    failed = await finished_run(api, {**FAST, "p95_ms": 9000.0}, result="failed")
    assert failed["comparison"]["baseline_run_id"] == first["id"]  # compared, regressed
    assert failed["comparison"]["regressed"] is True
    slow = await finished_run(api, SLOW_P95)

    r = await api.get(f"/runs/{slow['id']}")
    assert r.status_code == 200, r.text
    comparison = r.json()["comparison"]
    assert comparison["baseline_run_id"] == first["id"]  # not the failed run in between
    assert comparison["regressed"] is True
    assert comparison["figures"]["p95_ms"] == {
        "value": 312.0,
        "baseline": 254.0,
        "change_pct": 22.8,
        "regressed": True,
    }
    assert {f: v["regressed"] for f, v in comparison["figures"].items()} == {
        "p95_ms": True,
        "avg_ms": False,
        "error_rate": False,
        "apdex": False,
        "rps": False,
    }
    # Repeating the finishing update reads the stored run back (inline on SQLite): the
    # comparison comes back as the same object, not as its JSON text.
    again = await set_status(api, slow["id"], 3)
    assert again["comparison"] == comparison
    # slow passed, so it is the baseline now
    assert (await load_test(api, first["load_test_id"]))["baseline"]["run_id"] == slow["id"]

    # The events: test.regressed right after the run's test.finished.
    events = await list_events(api, run_id=slow["id"])
    assert [e["type"] for e in events] == ["test.started", "test.finished", "test.regressed"]
    assert events[2]["id"] > events[1]["id"]
    assert events[2]["context"]["run"]["comparison"] == comparison
    assert events[1]["context"]["run"]["comparison"] == comparison

    # Loadmance: per run (a run's deliveries keep their order), STARTED, then FINISH or
    # FAILED, then TEST_REGRESSED (warning).
    bodies = await wait_requests(receiver, 9)  # load_test.created: 1, runs: 2 + 3 + 3
    of_slow = [b for b in bodies if b["metadata"].get("testRunId") == str(slow["id"])]
    assert [b["eventType"] for b in of_slow] == ["TEST_STARTED", "TEST_FINISH", "TEST_REGRESSED"]
    of_failed = [b for b in bodies if b["metadata"].get("testRunId") == str(failed["id"])]
    assert [b["eventType"] for b in of_failed] == [
        "TEST_STARTED",
        "TEST_FAILED",
        "TEST_REGRESSED",
    ]
    regressed = of_slow[-1]
    assert regressed["severity"] == "warning"
    assert regressed["title"] == "Performance Regression"
    assert regressed["metadata"]["baselineRunId"] == str(first["id"])
    assert regressed["metadata"]["regressedMetrics"] == "p95_ms"
    assert "p95 312 ms (+22.8 % vs run #" in regressed["message"]
    assert [b["eventType"] for b in bodies].count("TEST_REGRESSED") == 2


async def test_pin_and_unpin(api: httpx.AsyncClient) -> None:
    """A pinned run is the baseline until DELETE, which returns to the latest passed run."""
    old = await finished_run(api, FAST)
    newer = await finished_run(api, {**FAST, "p95_ms": 400.0})  # regressed, but passed
    lt_id = old["load_test_id"]
    r = await api.put(f"/load-tests/{lt_id}/baseline", json={"run_id": old["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["baseline"] == {"run_id": old["id"], "pinned": True}
    assert (await load_test(api, lt_id))["baseline"] == {"run_id": old["id"], "pinned": True}

    # Against the pinned run, p95 450 is +77 %; against `newer` (400) it would be +12.5 %.
    pinned = await finished_run(api, {**FAST, "p95_ms": 450.0})
    assert pinned["comparison"]["baseline_run_id"] == old["id"]
    assert pinned["comparison"]["regressed"] is True

    r = await api.delete(f"/load-tests/{lt_id}/baseline")
    assert r.status_code == 200, r.text
    assert r.json()["baseline"] == {"run_id": pinned["id"], "pinned": False}
    after = await finished_run(api, {**FAST, "p95_ms": 460.0})
    assert after["comparison"]["baseline_run_id"] == pinned["id"]
    assert after["comparison"]["figures"]["p95_ms"]["change_pct"] == 2.2
    assert after["comparison"]["regressed"] is False
    assert [e["type"] for e in await list_events(api, run_id=after["id"])] == [
        "test.started",
        "test.finished",
    ]
    assert newer["comparison"]["baseline_run_id"] == old["id"]


async def test_pinning_a_wrong_run_is_a_422_on_run_id(api: httpx.AsyncClient) -> None:
    """A run of another load test, an unfinished run or an unknown run cannot be pinned,
    and nothing changes."""
    mine = await finished_run(api, FAST)
    other = await finished_run(api, FAST, name="search")
    unfinished = await new_run(api)
    lt_id = mine["load_test_id"]
    cases = [
        (other["id"], "is not a run of load test"),
        (unfinished["id"], "has not finished"),
        (999_999, "is not a run of load test"),
    ]
    for run_id, says in cases:
        r = await api.put(f"/load-tests/{lt_id}/baseline", json={"run_id": run_id})
        body = assert_error(r, 422, "run_id")
        assert says in body["message"], body
    for bad in ({}, {"run_id": "1"}, {"run_id": 0}, {"run_id": 1, "x": 1}):
        r = await api.put(f"/load-tests/{lt_id}/baseline", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await load_test(api, lt_id))["baseline"] == {"run_id": mine["id"], "pinned": False}
    r = await api.put("/load-tests/999999/baseline", json={"run_id": mine["id"]})
    assert_error(r, 404)


async def test_tolerances_and_null(api: httpx.AsyncClient) -> None:
    """PATCH sets tolerances one by one; null turns a check off (the figure is still
    compared, never regressed); the load test shows them."""
    base = await finished_run(api, FAST)
    lt_id = base["load_test_id"]
    r = await api.patch(
        f"/load-tests/{lt_id}", json={"regression": {"p95_pct": None, "rps_pct": 5}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["regression"] == {
        "p95_pct": None,
        "avg_pct": 20.0,
        "error_rate_pp": 1.0,
        "apdex_drop": 0.05,
        "rps_pct": 5.0,
    }
    assert (await load_test(api, lt_id))["regression"]["p95_pct"] is None
    assert r.json()["name"] == "checkout"

    # p95 is 4x worse but its check is off; rps -10 % is over the new 5 %.
    run = await finished_run(api, {**FAST, "p95_ms": 1000.0, "rps": 90.0})
    figures = run["comparison"]["figures"]
    assert figures["p95_ms"]["regressed"] is False and figures["p95_ms"]["change_pct"] == 293.7
    assert figures["rps"]["regressed"] is True

    # Only p95 worse, with its check off: no regression, no event.
    r = await api.patch(f"/load-tests/{lt_id}", json={"regression": {"rps_pct": 20}})
    assert r.json()["regression"]["p95_pct"] is None  # left out: kept
    quiet = await finished_run(api, {**FAST, "p95_ms": 2000.0})
    assert quiet["comparison"]["regressed"] is False
    types = [e["type"] for e in await list_events(api, run_id=quiet["id"])]
    assert "test.regressed" not in types

    for bad in ({"p95_pct": -1}, {"p95_pct": "20"}, {"nope": 1}, {"apdex_drop": True}):
        r = await api.patch(f"/load-tests/{lt_id}", json={"regression": bad})
        assert r.status_code == 422, (bad, r.text)
    r = await api.patch(f"/load-tests/{lt_id}", json={})
    assert r.status_code == 422, r.text


async def test_a_run_missing_a_figure_compares_the_rest(api: httpx.AsyncClient) -> None:
    """A figure one side did not report is not compared; a run without metrics still
    gets a comparison with no figures."""
    await finished_run(api, {"p95_ms": 100.0})
    run = await finished_run(api, {"avg_ms": 5.0, "p95_ms": 101.0})
    assert list(run["comparison"]["figures"]) == ["p95_ms"]
    bare = await finished_run(api, {})
    assert bare["comparison"]["figures"] == {} and bare["comparison"]["regressed"] is False


@pytest.mark.parametrize("fmt", ["loadimpact", "loadimpact-legacy"])
async def test_loadimpact_formats_cannot_subscribe(
    api: httpx.AsyncClient, receiver: RecordingReceiver, fmt: str
) -> None:
    """The k6/LoadImpact formats cannot express test.regressed: a 422 naming the event."""
    body = {
        "organization_id": 1,
        "kind": "webhook",
        "name": "k6",
        "config": {"url": receiver.url, "format": fmt},
        "events": ["test.finished", "test.regressed"],
    }
    r = await api.post("/channels", json=body)
    err = assert_error(r, 422, "events[1]")
    assert "cannot express 'test.regressed'" in err["message"]
    # By default they are not subscribed to it, so a regression reaches them not at all.
    channel = await create_webhook(api, receiver.url, config={"url": receiver.url, "format": fmt})
    assert "test.regressed" not in channel["events"]
    await finished_run(api, FAST)
    run = await finished_run(api, SLOW_P95)
    items = await wait_deliveries(
        api, lambda d: len(d) == 4 and all(x["status"] == "succeeded" for x in d)
    )
    assert {d["event_type"] for d in items} == {"test.started", "test.finished"}
    assert run["comparison"]["regressed"] is True


async def test_regressed_event_can_be_filtered(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """test.regressed takes the filters of test.finished: a channel for scheduled runs
    only does not hear of a manual run's regression."""
    await create_webhook(
        api,
        receiver.url,
        config={"url": receiver.url, "format": "loadmance"},
        events=["test.regressed"],
        filters={"test.regressed": {"triggers": ["scheduled"]}},
    )
    await finished_run(api, FAST)
    await finished_run(api, SLOW_P95)  # manual: filtered out
    scheduled = await new_run(api, trigger="scheduled")
    await set_status(api, scheduled["id"], 2)
    # +28 % against the manual run, the latest passed one
    done = await set_status(api, scheduled["id"], 3, metrics={**SLOW_P95, "p95_ms": 400.0})
    assert done["comparison"]["regressed"] is True
    [body] = await wait_requests(receiver, 1)
    assert body["eventType"] == "TEST_REGRESSED"
    assert body["metadata"]["testRunId"] == str(scheduled["id"])
    items = await wait_deliveries(api, lambda d: all(x["status"] != "pending" for x in d))
    assert len(items) == 1


async def test_slack_finished_message_shows_the_deltas(api: httpx.AsyncClient) -> None:
    """The Slack finished message gives each compared figure its change against the
    baseline run; the regression message names what got worse."""
    async with FakeSlackWebhook() as slack:
        r = await api.post(
            "/channels",
            json={
                "organization_id": 1,
                "kind": "slack",
                "name": "slack",
                "config": {"webhook_url": slack.webhook_url()},
                "events": ["test.finished", "test.regressed"],
            },
        )
        assert r.status_code == 201, r.text
        base = await finished_run(api, FAST)
        await finished_run(api, SLOW_P95)
        deadline = time.monotonic() + 15
        while len(slack.accepted) < 3:
            assert time.monotonic() < deadline, slack.accepted
            await asyncio.sleep(0.05)
    _, finished, regressed = slack.accepted
    text = str(finished["blocks"])
    assert f"312.0 ms (+22.8 % vs run #{base['id']})" in text
    assert f"132.0 ms (+10.0 % vs run #{base['id']})" in text
    assert f"run #{base['id']}" in text  # the Baseline fact
    assert regressed["blocks"][0]["text"]["text"] == "📉 Load test regressed: checkout"
    assert f"p95 312 ms (+22.8 % vs run #{base['id']})" in str(regressed)


async def test_email_body_shows_the_deltas(
    api: httpx.AsyncClient,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    """The email of a finished run lists each figure with its change against the baseline,
    in the text part and in the HTML part."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "email",
            "name": "mail",
            "config": {
                "to": ["ops@example.com"],
                "from": "alerts@example.com",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "starttls": False,
            },
            "events": ["test.finished", "test.regressed"],
        },
    )
    assert r.status_code == 201, r.text
    base = await finished_run(api, FAST)
    await finished_run(api, SLOW_P95)
    deadline = time.monotonic() + 15
    while len(smtp.recorder.messages) < 3:
        assert time.monotonic() < deadline, [m["Subject"] for m in smtp.recorder.messages]
        await asyncio.sleep(0.05)
    first, finished, regressed = smtp.recorder.messages
    text = finished.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = finished.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f"Baseline: run #{base['id']}" in text
    assert f"p95 response: 312.0 ms (+22.8 % vs run #{base['id']})" in text
    assert f"Throughput: 90.0 req/s (-10.0 % vs run #{base['id']})" in text
    assert f"312.0 ms (+22.8 % vs run #{base['id']})" in html
    first_text = first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "vs run #" not in first_text  # the first run had no baseline
    assert regressed["Subject"].startswith("Load test regressed: checkout in ")
    assert f"p95 312 ms (+22.8 % vs run #{base['id']})" in regressed["Subject"]


async def test_changed_tolerances_emit_load_test_updated(api: httpx.AsyncClient) -> None:
    """A change of tolerances is a load_test.updated naming each changed one; setting the
    same values again emits nothing."""
    run = await finished_run(api, FAST)
    lt_id = run["load_test_id"]
    body = {"regression": {"p95_pct": None, "avg_pct": 20}}  # avg_pct: unchanged
    assert (await api.patch(f"/load-tests/{lt_id}", json=body)).status_code == 200
    assert (await api.patch(f"/load-tests/{lt_id}", json=body)).status_code == 200
    updates = await list_events(api, type="load_test.updated")
    assert [e["context"]["extra"]["changes"] for e in updates] == [
        {"regression.p95_pct": [20.0, None]}
    ]
