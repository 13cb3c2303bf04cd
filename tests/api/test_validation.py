"""Validation at the edge: names, ids and metrics documents are checked before anything is
stored, and each refusal names the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.support import assert_error, new_run

HUGE = 2**63  # past SQLite's INTEGER
PAST_PG = 2**31  # past PostgreSQL's INTEGER


@pytest.mark.parametrize(
    ("metrics", "field", "hint"),
    [
        ({"rps": "fast"}, "metrics.rps", "must be a number"),  # a word for a figure
        ({"rps": "50.2"}, "metrics.rps", "must be a number"),  # a number as text
        ({"avg_ms": True}, "metrics.avg_ms", "must be a number"),  # JSON true is no number
        ({"requests": 1.5}, "metrics.requests", "whole number"),  # a count with a fraction
        ({"vus": -1}, "metrics.vus", "whole number"),  # a negative count
        ({"checks": {"passes": "ten"}}, "metrics.checks.passes", "whole number"),
        ({"thresholds": ["x"]}, "metrics.thresholds.0", ""),  # an entry that is no object
        ({"thresholds": "all ok"}, "metrics.thresholds", ""),  # not a list
        ({"thresholds": [{"metric": "a", "expression": "b"}]}, "metrics.thresholds.0.ok", ""),
        ({"thresholds": [{"metric": "a", "expression": "b", "ok": "yes"}]}, "", ""),
    ],
)
async def test_odd_metrics_documents_are_refused(
    api: httpx.AsyncClient, metrics: dict[str, Any], field: str, hint: str
) -> None:
    """A metrics document whose figures are not numbers, or whose thresholds are not
    objects with metric, expression and ok, is a 422 naming the field, and the run keeps
    its metrics; live reports are checked the same way."""
    run = await new_run(api)
    await api.patch(f"/runs/{run['id']}", json={"status": 2})
    r = await api.patch(f"/runs/{run['id']}", json={"metrics": metrics})
    body = assert_error(r, 422, field or None)
    assert hint in body["message"]
    assert (await api.get(f"/runs/{run['id']}")).json()["metrics"] == {}
    assert_error(await api.post(f"/runs/{run['id']}/reports", json={"metrics": metrics}), 422)
    assert (await api.get(f"/runs/{run['id']}/reports")).json()["items"] == []


async def test_a_documented_metrics_document_is_kept_as_sent(api: httpx.AsyncClient) -> None:
    """Known figures that are numbers, thresholds with extra keys and unknown keys with any
    JSON value pass, and are stored as given."""
    run = await new_run(api)
    metrics = {
        "requests": 1500,
        "rps": 50,
        "avg_ms": 245.7,
        "checks": {"passes": 10, "fails": 0, "rate": 1.0},
        "thresholds": [
            {"metric": "http_req_duration", "expression": "p(95)<500", "ok": True, "value": 480}
        ],
        "custom": {"region": "eu", "tags": ["a", "b"], "nothing": None},
    }
    r = await api.patch(f"/runs/{run['id']}", json={"metrics": metrics})
    assert r.status_code == 200, r.text
    assert r.json()["metrics"] == metrics


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/projects", {"organization_id": 1}),
        ("/load-tests", {"project_id": 1}),
        ("/organizations", {}),
    ],
)
@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("   ", "only spaces"),  # blank once trimmed
        ("\t\n ", "only spaces"),
        ("tab\there", "control character"),  # PostgreSQL takes it, but it is no name
        ("nul\x00byte", "control character"),  # PostgreSQL refuses NUL in text: a 500 before
    ],
)
async def test_names_must_be_one_plain_line(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], name: str, hint: str
) -> None:
    """Blank names and names with control characters are a 422 naming the field, and
    nothing is created."""
    before = (await api.get(path)).json()["items"]
    r = await api.post(path, json={**body, "name": name})
    assert hint in assert_error(r, 422, "name")["message"]
    assert (await api.get(path)).json()["items"] == before


async def test_a_run_of_a_blank_load_test_name_is_refused(api: httpx.AsyncClient) -> None:
    """POST /runs with a blank load_test_name names that field."""
    r = await api.post("/runs", json={"project_id": 1, "load_test_name": "  "})
    assert_error(r, 422, "load_test_name")


@pytest.mark.parametrize("ident", [0, PAST_PG, HUGE, 2**70])
async def test_ids_out_of_range_in_a_path_are_404(api: httpx.AsyncClient, ident: int) -> None:
    """An id no row can have is a 404 on both databases, never a 500."""
    for path in (f"/runs/{ident}", f"/projects/{ident}", f"/load-tests/{ident}"):
        assert_error(await api.get(path), 404)
    assert_error(await api.patch(f"/runs/{ident}", json={"status": 2}), 404)
    assert_error(await api.get("/runs", params={"project_id": ident}), 404)


@pytest.mark.parametrize("ident", [0, PAST_PG, HUGE])
async def test_ids_out_of_range_in_a_body_are_422(api: httpx.AsyncClient, ident: int) -> None:
    """An id no row can have, in a body or as a page cursor, is a 422 naming the field."""
    assert_error(await api.post("/runs", json={"load_test_id": ident}), 422, "load_test_id")
    r = await api.post("/runs", json={"project_id": ident, "load_test_name": "x"})
    assert_error(r, 422, "project_id")
    assert_error(await api.post("/projects", json={"organization_id": ident, "name": "x"}), 422)
    assert_error(await api.get("/runs", params={"before_id": ident}), 422, "before_id")
