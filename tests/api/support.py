"""Helpers shared by the end-to-end API tests (real server, real receivers, both databases)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.types import ASGIApp

from conftest import webhook_channel
from loadbell.api.admission import Admission
from loadbell.api.edge import Edge
from loadbell.domain.roles import Role
from loadbell.monitoring.registry import Metrics
from loadbell.settings import Settings
from loadbell.store import accounts
from loadbell.store.db import create_engine
from loadbell.store.tables import metadata

Items = list[dict[str, Any]]


def edge(app: ASGIApp, admission: Admission) -> Edge:
    """``app`` behind loadbell's edge as the app's stack has it, with this admission."""
    return Edge(
        app,
        metrics=Metrics("test"),
        api_prefix="/api/v1",
        admission=admission,
        max_body_bytes=Settings().max_body_bytes,
    )


async def create_webhook(api: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    r = await api.post("/channels", json=webhook_channel(url, **extra))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def new_run(
    api: httpx.AsyncClient,
    *,
    project_id: int = 1,
    name: str = "checkout",
    trigger: str = "manual",
) -> dict[str, Any]:
    r = await api.post(
        "/runs", json={"project_id": project_id, "load_test_name": name, "trigger": trigger}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def set_status(api: httpx.AsyncClient, run_id: int, status: int, **extra: Any) -> Any:
    r = await api.patch(f"/runs/{run_id}", json={"status": status, **extra})
    assert r.status_code == 200, r.text
    return r.json()


async def list_deliveries(api: httpx.AsyncClient, **params: Any) -> Items:
    r = await api.get("/deliveries", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def list_events(api: httpx.AsyncClient, **params: Any) -> Items:
    r = await api.get("/events", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def wait_deliveries(
    api: httpx.AsyncClient,
    until: Callable[[Items], bool],
    timeout: float = 10.0,
    **params: Any,
) -> Items:
    """Poll GET /deliveries until ``until(items)`` holds; fail with the last items otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        items = await list_deliveries(api, **params)
        if until(items):
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries never reached the expected state: {items}")
        await asyncio.sleep(0.05)


def all_done(items: Items) -> bool:
    return bool(items) and all(d["status"] != "pending" for d in items)


async def scoped_token(settings: Settings, organization_id: int, role: Role) -> str:
    """A token limited to one organization, as `loadbell token create --org` makes it."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            return await accounts.service_token(conn, organization_id, role, f"{role.value} bot")
    finally:
        await engine.dispose()


async def row_counts(settings: Settings) -> dict[str, int]:
    """How many rows each table holds: the proof that a refused request stored nothing."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return {
                t.name: (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one()
                for t in metadata.sorted_tables
            }
    finally:
        await engine.dispose()


async def stored_rows(settings: Settings) -> dict[str, int]:
    """:func:`row_counts` without the workers' liveness rows, which come and go by
    themselves."""
    counts = await row_counts(settings)
    counts.pop("workers")
    return counts


def assert_error(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is a JSON error with error/message/field; returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert {"error", "message", "field"} <= set(body), body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    if field is not None:
        assert body["field"] == field, body
    return body


def unusable_urls(port: int) -> list[tuple[str, str]]:
    """URLs whose host is neither a canonical address nor a DNS name, with what the 422 says."""
    return [
        (f"http://127.1:{port}/hook", "write 127.0.0.1 instead"),  # two-part shorthand
        (f"http://2130706433:{port}/hook", "write 127.0.0.1 instead"),  # one decimal number
        (f"http://0x7f.0.0.1:{port}/hook", "write 127.0.0.1 instead"),  # a hex part
        (f"http://017700000001:{port}/hook", "write 127.0.0.1 instead"),  # one octal number
        (f"http://hooks example.com:{port}/hook", "' ' cannot appear"),  # a space
        (f"http://hooks!.example.com:{port}/hook", "'!' cannot appear"),  # not in a DNS name
        ("http:///hook", "has no host"),  # empty host
    ]
