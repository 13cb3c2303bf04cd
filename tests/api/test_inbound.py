"""Grafana Cloud k6's webhooks, posted to an inbound source's URL, become loadbell runs and
loadbell's own notifications. Bodies are rendered with Jinja2 from the fixture copy of
Grafana's Generic template (tests/formats/grafana/generic.json.j2), as Grafana renders it.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest

from api.support import assert_error, list_events, scoped_token, stored_rows
from conftest import Server, webhook_channel
from loadbell.domain.roles import Role
from loadbell.testing import RecordingReceiver

GENERIC = (Path(__file__).parents[1] / "formats/grafana/generic.json.j2").read_text()

# Grafana's status codes and texts (seed 000's table) for the identifiers used below.
_ENDS = {
    "test.finished.success": (3, "Finished", 0),
    "test.finished.failed": (3, "Finished", 1),
    "test.finished.timed_out": (4, "Timed out", 1),
    "test.finished.aborted_user": (5, "Aborted by user", 1),
}


def grafana_body(
    event_type: str, *, test_id: int = 281734, name: str = "Checkout flow", **over: Any
) -> dict[str, Any]:
    """Render Grafana's Generic template for a run of load test 61238 in Grafana's project
    3811, as Grafana Cloud k6 would for ``event_type``; ``over`` replaces ``test`` values."""
    started = event_type.startswith("test.started")
    status, status_text, result = (2, "Running", 0) if started else _ENDS[event_type]
    test = {
        "organization_id": 9120,
        "project_id": 3811,
        "id": test_id,
        "url": f"https://myorg.grafana.net/a/k6-app/runs/{test_id}",
        "load_test_id": 61238,
        "load_test_url": "https://myorg.grafana.net/a/k6-app/tests/61238",
        "name": name,
        "was_scheduled": 1 if event_type == "test.started.scheduled" else 0,
        "started": "2026-12-06T04:10:07Z",
        "ended": "" if started else "2026-12-06T04:20:12Z",
        "status": status,
        "status_text": status_text,
        "result": result,
        "result_text": "Failed" if result else "Passed",
        **over,
    }
    rendered = jinja2.Template(GENERIC).render(
        test=test,
        user={"id": 448, "name": "Ada Lovelace", "avatar": "https://grafana.com/avatar/ab12"},
        event={"id": f"e{test_id}{event_type}"[:32], "type": event_type, "text": "Test event"},
        errors=[],
    )
    body: dict[str, Any] = json.loads(rendered)
    return body


def headers(
    event_type: str, delivery: str = "9b7e4f52-6c0f-4d55-b0b0-1f2d3c4b5a69"
) -> dict[str, str]:
    return {
        "User-Agent": "K6CloudWebHook",
        "X-k6cloud-ID": delivery,
        "X-k6cloud-Event": event_type,
    }


async def new_source(api: httpx.AsyncClient, project_id: int = 1) -> dict[str, Any]:
    r = await api.post("/inbound-sources", json={"project_id": project_id, "kind": "k6cloud"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def receive_url(app_server: Server, source: dict[str, Any]) -> str:
    """The source's URL on this test server (the answer names LOADBELL_PUBLIC_URL's host)."""
    path = source["url"].removeprefix(app_server.settings.base_url.rstrip("/"))
    return f"{app_server.url}{path}"


async def post(url: str, body: Any, event_type: str = "", delivery: str = "") -> httpx.Response:
    """Post as Grafana does: no Authorization header."""
    async with httpx.AsyncClient(timeout=30) as grafana:
        return await grafana.post(
            url, json=body, headers=headers(event_type, delivery or "d-" + event_type)
        )


async def test_start_then_failed_is_one_failed_run_that_notifies(
    app_server: Server, api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A Grafana start then a test.finished.failed of the same test run make one loadbell
    run, Finished and failed, in a load test named as Grafana's; a webhook subscribed in the
    project gets loadbell's test.started and test.finished for it; the Grafana links are kept."""
    r = await api.post(
        "/channels",
        json=webhook_channel(receiver.url, project_id=1, events=["test.started", "test.finished"]),
    )
    assert r.status_code == 201, r.text
    source = await new_source(api)
    url = receive_url(app_server, source)

    start = await post(url, grafana_body("test.started.manual"), "test.started.manual")
    assert start.status_code == 200, start.text
    end = await post(url, grafana_body("test.finished.failed"), "test.finished.failed")
    assert end.status_code == 200, end.text
    assert start.json()["run_id"] == end.json()["run_id"]
    assert start.json()["changed"] and end.json()["changed"]

    run = (await api.get(f"/runs/{end.json()['run_id']}")).json()
    assert (run["status"], run["result"], run["trigger"]) == (3, "failed", "manual")
    assert run["load_test_name"] == "Checkout flow"
    assert [t["status"] for t in run["timeline"]] == [-2, 2, 3]

    got = sorted(await receiver.wait_for(2, timeout=30), key=lambda q: q.json()["status"])
    assert [q.header("X-LoadImpact-Event") for q in got] == ["test.started", "test.finished"]
    assert [(q.json()["status"], q.json()["load_test_run_id"]) for q in got] == [
        (2, run["id"]),
        (3, run["id"]),
    ]

    stored = await list_events(api, run_id=run["id"])
    types = sorted(e["type"] for e in stored)
    assert types == ["test.finished", "test.started"], stored
    finished = next(e for e in stored if e["type"] == "test.finished")
    grafana = finished["context"]["extra"]["grafana"]
    assert grafana["url"] == "https://myorg.grafana.net/a/k6-app/runs/281734"
    assert grafana["load_test_url"] == "https://myorg.grafana.net/a/k6-app/tests/61238"


async def test_repeated_deliveries_stage_nothing_new(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """Grafana's retries (same X-k6cloud-ID, same body), and a start that arrives after the
    end, change nothing and record no second event."""
    url = receive_url(app_server, await new_source(api))
    start = grafana_body("test.started.scheduled", test_id=5)
    end = grafana_body("test.finished.timed_out", test_id=5)
    first = await post(url, start, "s", "id-1")
    assert first.status_code == 200 and first.json()["changed"], first.text
    again = await post(url, start, "s", "id-1")
    assert again.status_code == 200 and not again.json()["changed"], again.text
    assert (await post(url, end, "e", "id-2")).json()["changed"]
    before = await stored_rows(app_server.settings)
    for body, ident in ((end, "id-2"), (start, "id-1")):
        r = await post(url, body, "x", ident)
        assert r.status_code == 200 and not r.json()["changed"], r.text
        assert r.json()["run_id"] == first.json()["run_id"]
    assert await stored_rows(app_server.settings) == before
    run = (await api.get(f"/runs/{first.json()['run_id']}")).json()
    assert (run["status"], run["result"], run["trigger"]) == (4, "failed", "scheduled")
    stored = await list_events(api, run_id=run["id"])
    assert sorted(e["type"] for e in stored) == ["test.finished", "test.started"]


async def test_grafanas_test_event_answers_200_and_makes_nothing(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """Grafana's "Send test event" (event.type <any>, mock values) gets a 200 with no run,
    so the user sees the URL works; nothing is stored."""
    url = receive_url(app_server, await new_source(api))
    body = grafana_body("test.started.manual")
    body["event"].update(type="<any>", text="Unknown")
    body["status"] = 42  # mock values are not checked
    before = await stored_rows(app_server.settings)
    r = await post(url, body, "<any>")
    assert r.status_code == 200, r.text
    assert r.json() == {"run_id": None, "load_test_id": None, "event": "<any>", "changed": False}
    assert await stored_rows(app_server.settings) == before


async def test_a_different_end_of_an_ended_run_is_409(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """The first end wins, as with PATCH /runs: another end is a 409 naming status."""
    url = receive_url(app_server, await new_source(api))
    assert (await post(url, grafana_body("test.finished.success", test_id=7))).status_code == 200
    r = await post(url, grafana_body("test.finished.aborted_user", test_id=7))
    assert_error(r, 409, "status")


async def test_runs_of_one_grafana_load_test_share_a_load_test(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """Two Grafana test runs are two loadbell runs of one load test, matched by Grafana's
    load_test_id even after a rename in Grafana."""
    url = receive_url(app_server, await new_source(api))
    one = (await post(url, grafana_body("test.started.manual", test_id=1))).json()
    two = (await post(url, grafana_body("test.started.manual", test_id=2, name="Renamed"))).json()
    assert one["run_id"] != two["run_id"]
    assert one["load_test_id"] == two["load_test_id"]


async def test_wrong_or_revoked_token_is_404_and_stores_nothing(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """A token no source has, a revoked one, and one with a letter changed all get the same
    404, and nothing is stored."""
    source = await new_source(api)
    url = receive_url(app_server, source)
    body = grafana_body("test.started.manual")
    before = await stored_rows(app_server.settings)
    wrong = url[:-1] + ("A" if url[-1] != "A" else "B")
    none = url.rsplit("/", 1)[0] + "/lbin_" + "x" * 43
    answers = [await post(u, body) for u in (wrong, none)]
    r = await api.delete(f"/inbound-sources/{source['id']}")
    assert r.status_code == 204, r.text
    answers.append(await post(url, body))
    messages = {assert_error(a, 404)["message"] for a in answers}
    assert len(messages) == 1  # no hint which it was
    after = await stored_rows(app_server.settings)
    assert {k: v for k, v in after.items() if k != "inbound_sources"} == {
        k: v for k, v in before.items() if k != "inbound_sources"
    }


def _without(body: dict[str, Any], path: str) -> dict[str, Any]:
    parts = path.split(".")
    target = body
    for p in parts[:-1]:
        target = target[p]
    del target[parts[-1]]
    return body


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    parts = path.split(".")
    target = body
    for p in parts[:-1]:
        target = target[p]
    target[parts[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # the test run's id is what makes a start and an end one run
        (_without(grafana_body("test.started.manual"), "test_run.id"), "test_run.id"),
        # Grafana renders status unquoted: a string is not what its template makes
        (_set(grafana_body("test.finished.failed"), "status", "3"), "status"),
        # not a status code of seed 000's table
        (_set(grafana_body("test.finished.failed"), "status", 42), "status"),
        # an identifier Grafana does not list ("not in frontend" in its page)
        (
            _set(grafana_body("test.finished.failed"), "event.type", "test.finished.all"),
            "event.type",
        ),
        # an end identifier with a Running status
        (_set(grafana_body("test.finished.failed"), "status", 2), "status"),
        # "success" with result 1 (failed): Grafana would have said test.finished.failed
        (_set(grafana_body("test.finished.success"), "result", 1), "event.type"),
        # a scheduled start that says it was not scheduled
        (
            _set(grafana_body("test.started.scheduled"), "test_run.was_scheduled", "no"),
            "test_run.was_scheduled",
        ),
        # the load test's name is what the run is filed under
        (_set(grafana_body("test.started.manual"), "test_run.name", "  "), "test_run.name"),
        (_without(grafana_body("test.started.manual"), "event"), "event"),
    ],
)
async def test_malformed_body_is_422_naming_the_field(
    app_server: Server, api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """A body that is not what Grafana's Generic template renders, or whose identifier,
    status and result disagree, is a 422 naming the field; nothing is stored."""
    url = receive_url(app_server, await new_source(api))
    before = await stored_rows(app_server.settings)
    assert_error(await post(url, body), 422, field)
    assert await stored_rows(app_server.settings) == before


async def test_sources_are_listed_without_tokens_and_checked(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """POST answers the URL once; GET lists the project's sources without it; a bad project
    or kind is a 422 naming it; a member may not create one."""
    source = await new_source(api)
    token = source["url"].rsplit("/", 1)[1]
    assert source["url"] == f"http://loadbell.test/api/v1/inbound/k6cloud/{token}"
    assert token.startswith("lbin_") and len(token) > 40
    assert {"id", "project_id", "kind", "created_at"} <= set(source)
    listed = (await api.get("/inbound-sources", params={"project_id": 1})).json()["items"]
    assert [s["id"] for s in listed] == [source["id"]]
    assert token not in json.dumps(listed) and "url" not in listed[0]

    r = await api.post("/inbound-sources", json={"project_id": 999, "kind": "k6cloud"})
    assert_error(r, 422, "project_id")
    r = await api.post("/inbound-sources", json={"project_id": 1, "kind": "datadog"})
    assert_error(r, 422, "kind")
    member = await scoped_token(app_server.settings, 1, Role.MEMBER)
    async with app_server.client(member) as as_member:
        r = await as_member.post("/inbound-sources", json={"project_id": 1, "kind": "k6cloud"})
        assert_error(r, 403)
        r = await as_member.delete(f"/inbound-sources/{source['id']}")
        assert_error(r, 403)
    assert (await api.delete(f"/inbound-sources/{source['id']}")).status_code == 204
    assert_error(await api.delete(f"/inbound-sources/{source['id']}"), 404)
    assert (await api.get("/inbound-sources", params={"project_id": 1})).json()["items"] == []


async def test_openapi_documents_the_endpoints(api: httpx.AsyncClient) -> None:
    """The document has the sources' operations and the receiving one, with Grafana's
    Generic body and no bearer token required for it."""
    doc = (await api.get("/openapi.json")).json()
    paths = doc["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/inbound-sources"])
    assert "delete" in paths["/api/v1/inbound-sources/{source_id}"]
    receive = paths["/api/v1/inbound/k6cloud/{token}"]["post"]
    assert "401" not in receive["responses"]
    assert {"200", "404", "422"} <= set(receive["responses"])
    body = receive["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert {"test_run", "event", "status", "result"} <= set(schema["required"])
