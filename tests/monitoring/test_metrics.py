"""/metrics on serve and on `loadbell worker --metrics-port`: scraped and parsed with
prometheus-client's own parser, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    Server,
    SpawnLoadbell,
    free_port,
    seed,
    start_server,
    webhook_channel,
    worker_env,
)
from loadbell.settings import Settings
from loadbell.testing import RecordingReceiver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample, keyed by name and labels (without ``process``)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = frozenset((k, v) for k, v in s.labels.items() if k != "process")
            out[(s.name, labels)] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{url}/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def until(url: str, check: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    """Scrape until ``check`` holds (the worker records results in batches)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        samples = await scrape(url)
        if check(samples):
            return samples
        assert asyncio.get_running_loop().time() < deadline, f"metrics never moved: {samples}"
        await asyncio.sleep(0.1)


async def test_deliveries_move_the_counters(app_server: Server, api: httpx.AsyncClient) -> None:
    """A delivered, a retried and a failed delivery show in the outcome, retry, duration and
    claim metrics, and the backlog gauges drop back to 0."""
    ok = RecordingReceiver()
    bad = RecordingReceiver(status=500)
    async with ok, bad:
        fast = {"max_attempts": 2, "base_delay": 0.1, "max_delay": 0.2}
        for hook in (
            webhook_channel(f"{ok.url}/ok", events=["test.started"]),
            webhook_channel(f"{bad.url}/bad", events=["test.started"], retry=fast),
        ):
            assert (await api.post("/channels", json=hook)).status_code == 201
        before = await scrape(app_server.url)
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "m"})).json()
        assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200

        def settled(s: Samples) -> bool:
            name = "loadbell_deliveries_total"
            # The counters move when an outcome is decided; the backlog gauges once the
            # worker has written the results (a batch later): wait for both.
            return (
                value(s, name, kind="webhook", outcome="delivered") >= 1
                and value(s, name, kind="webhook", outcome="failed") >= 1
                and value(s, "loadbell_deliveries_pending") == 0
            )

        after = await until(app_server.url, settled)
    name = "loadbell_deliveries_total"
    assert value(after, name, kind="webhook", outcome="delivered") == 1
    assert value(after, name, kind="webhook", outcome="retry") == 1  # the 500's first attempt
    assert value(after, name, kind="webhook", outcome="failed") == 1  # its second and last
    assert value(after, "loadbell_delivery_retries_total", kind="webhook") == 1
    assert value(after, "loadbell_attempt_duration_seconds_count", kind="webhook") == 3
    taken = value(after, "loadbell_claimed_deliveries_total", source="handoff") + value(
        after, "loadbell_claimed_deliveries_total", source="claim"
    )
    assert taken >= 3  # two deliveries, the retry claimed again
    assert value(after, "loadbell_claims_total") >= 1  # the retry was claimed
    assert value(before, "loadbell_deliveries_pending") == 0
    assert value(after, "loadbell_deliveries_pending") == 0
    assert value(after, "loadbell_worker_up") == 1
    assert value(after, "loadbell_database_errors_total", where="api") == 0


async def test_backlog_gauges_without_a_worker(settings: Settings) -> None:
    """With no worker, staged deliveries show as pending and due, and the oldest due one's
    age grows."""
    token = await seed(settings)
    server, task, url = await start_server(settings, run_worker=False)
    try:
        async with RecordingReceiver() as rx, Server(url, token, settings, None).client() as api:
            hook = webhook_channel(f"{rx.url}/hook", events=["test.started"])
            assert (await api.post("/channels", json=hook)).status_code == 201
            for i in range(3):
                r = await api.post("/runs", json={"project_id": 1, "load_test_name": f"b{i}"})
                assert (await api.patch(f"/runs/{r.json()['id']}", json={"status": 2})).is_success
            first = await scrape(url)
            assert value(first, "loadbell_deliveries_pending") == 3
            assert value(first, "loadbell_deliveries_due") == 3
            age = value(first, "loadbell_oldest_due_delivery_age_seconds")
            later = await until(
                url, lambda s: value(s, "loadbell_oldest_due_delivery_age_seconds") > age + 0.2
            )
            assert ("loadbell_worker_up", frozenset()) not in later  # no worker here
    finally:
        server.should_exit = True
        await task


async def test_requests_count_by_route_template(app_server: Server, api: httpx.AsyncClient) -> None:
    """Requests for two different runs count under one route template, with their status;
    so do run updates, which the edge answers past the router (api/direct.py)."""
    ids = []
    for i in range(2):
        r = await api.post("/runs", json={"project_id": 1, "load_test_name": f"r{i}"})
        ids.append(r.json()["id"])
    for run_id in ids:
        assert (await api.get(f"/runs/{run_id}")).status_code == 200
        assert (await api.patch(f"/runs/{run_id}", json={"status": 2})).status_code == 200
    assert (await api.get("/runs/999999")).status_code == 404
    assert (await api.patch("/runs/999999", json={"status": 2})).status_code == 404
    samples = await scrape(app_server.url)
    route = "/api/v1/runs/{run_id}"
    total = "loadbell_http_requests_total"
    assert value(samples, total, method="GET", route=route, status="200") == 2
    assert value(samples, total, method="GET", route=route, status="404") == 1
    assert value(samples, total, method="PATCH", route=route, status="200") == 2
    assert value(samples, total, method="PATCH", route=route, status="404") == 1
    assert value(samples, total, method="POST", route="/api/v1/runs", status="201") == 2
    assert not any(f"/runs/{ids[0]}" in dict(k[1]).get("route", "") for k in samples)
    count = "loadbell_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route=route) == 3


async def test_answers_of_the_edge_carry_an_id_and_are_counted(
    app_server: Server, api: httpx.AsyncClient
) -> None:
    """A body past the limit (413) and an unstorable JSON body (422), answered before any
    route, each carry the client's request id and count as unrouted with their status."""
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "edge"})).json()
    json_type = {"Content-Type": "application/json"}
    big = await api.patch(
        f"/runs/{run['id']}",
        content=b"x" * (app_server.settings.max_body_bytes + 1),
        headers={**json_type, "X-Request-ID": "edge-413"},
    )
    assert (big.status_code, big.headers["X-Request-ID"]) == (413, "edge-413")
    nan = await api.patch(
        f"/runs/{run['id']}",
        content=b'{"metrics": {"rps": NaN}}',
        headers={**json_type, "X-Request-ID": "edge-422"},
    )
    assert (nan.status_code, nan.headers["X-Request-ID"]) == (422, "edge-422")
    samples = await scrape(app_server.url)
    total = "loadbell_http_requests_total"
    for status in ("413", "422"):
        assert value(samples, total, method="PATCH", route="unrouted", status=status) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_token_protects_the_metrics(settings: Settings) -> None:
    """With LOADBELL_METRICS_TOKEN set, a scrape without it or with another gets a 401 that
    says what to send; with it, the metrics."""
    settings = settings.model_copy(update={"metrics_token": "s3cret-scrape"})
    server, task, url = await start_server(settings)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                r = await client.get(f"{url}/metrics", headers=headers)
                assert r.status_code == 401, headers
                assert r.json()["error"] == "unauthorized"
                assert "LOADBELL_METRICS_TOKEN" in r.json()["message"]
        samples = await scrape(url, token="s3cret-scrape")
        assert value(samples, "loadbell_worker_up") == 1
    finally:
        server.should_exit = True
        await task


async def test_worker_serves_metrics_on_its_port(
    app_server: Server, api: httpx.AsyncClient, spawn_loadbell: SpawnLoadbell
) -> None:
    """`loadbell worker --metrics-port` serves its own metrics under a worker process label,
    behind its token, and reports its worker up and its claims."""
    port = free_port()
    env = worker_env(app_server.settings, LOADBELL_METRICS_TOKEN="tok-worker")
    proc = await spawn_loadbell("worker", "--metrics-port", str(port), env=env)
    await proc.wait_for_line("metrics on http://127.0.0.1")
    await proc.wait_for_line("started")
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(f"{url}/metrics")).status_code == 401
    async with RecordingReceiver() as rx:
        # serve's own worker takes most of these; the spawned one claims alongside it.
        hook = webhook_channel(f"{rx.url}/hook", events=["test.started"])
        assert (await api.post("/channels", json=hook)).status_code == 201
        await stage_started(api, 20)
        await rx.wait_for(20, timeout=60)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        samples = await scrape(url, token="tok-worker")
        if value(samples, "loadbell_worker_up") == 1:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    assert ("loadbell_claims_total", frozenset()) in samples
    assert value(samples, "loadbell_deliveries_pending") >= 0
    text = await raw(url, "tok-worker")
    assert 'process="worker-' in text


async def stage_started(api: httpx.AsyncClient, count: int) -> None:
    for i in range(count):
        r = await api.post("/runs", json={"project_id": 1, "load_test_name": f"w{i}"})
        assert (await api.patch(f"/runs/{r.json()['id']}", json={"status": 2})).is_success


async def raw(url: str, token: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    return r.text
