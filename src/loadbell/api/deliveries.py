"""The delivery log: deliveries, their attempts, and redelivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, StrictInt

from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.services import access as lookups
from loadbell.services.access import Principal
from loadbell.services.errors import invalid
from loadbell.store import redelivery
from loadbell.store.tables import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    channels,
    deliveries,
    delivery_attempts,
    events,
)

router = APIRouter(tags=["deliveries"])
STATUSES = (DELIVERY_PENDING, DELIVERY_SUCCEEDED, DELIVERY_FAILED)


def _attempt(a: Any) -> dict[str, Any]:
    return {
        "series": a.series,
        "number": a.number,
        "started_at": a.started_at,
        "duration_ms": a.duration_ms,
        "outcome": a.outcome,
        "request_url": a.request_url,
        "request_headers": a.request_headers,
        "response_status": a.response_status,
        "response_body": a.response_body,
        "error": a.error,
    }


def _out(d: Any, attempts: list[Any]) -> dict[str, Any]:
    return {
        "id": d.id,
        "uuid": d.uuid,
        "status": d.status,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "run_id": d.run_id,
        "channel_id": d.channel_id,
        "target": d.target,
        "series": d.series,
        "attempt_count": d.attempts,
        "next_attempt_at": (
            datetime.fromtimestamp(d.next_attempt_at, UTC) if d.status == DELIVERY_PENDING else None
        ),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "attempts": [_attempt(a) for a in attempts],
    }


def _base() -> sa.Select[Any]:
    return (
        sa.select(deliveries, events.c.type.label("event_type"), events.c.run_id)
        .join(events, events.c.id == deliveries.c.event_id)
        .join(channels, channels.c.id == deliveries.c.channel_id)
    )


async def _attempts_for(conn: Any, ids: list[int]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {i: [] for i in ids}
    if ids:
        rows = await conn.execute(
            sa.select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id.in_(ids))
            .order_by(delivery_attempts.c.id)
        )
        for a in rows:
            grouped[a.delivery_id].append(a)
    return grouped


@router.get("/deliveries")
async def list_deliveries(
    channel_id: int | None = None,
    run_id: int | None = None,
    status: str | None = None,
    event_type: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    before_id: int | None = None,
    after_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Newest first, paged with ``before_id``; with ``run_id``, in event order, paged with
    ``after_id`` (a run's notifications read like its timeline)."""
    if status is not None and status not in STATUSES:
        raise invalid("status", f"use one of {', '.join(STATUSES)}")
    q = _base().where(channels.c.organization_id.in_(list(principal.roles)))
    if channel_id is not None:
        q = q.where(deliveries.c.channel_id == channel_id)
    if run_id is not None:
        q = q.where(events.c.run_id == run_id)
    if status is not None:
        q = q.where(deliveries.c.status == status)
    if event_type is not None:
        q = q.where(events.c.type == event_type)
    if run_id is not None:
        if after_id is not None:
            q = q.where(deliveries.c.id > after_id)
        q = q.order_by(deliveries.c.id)
    else:
        if before_id is not None:
            q = q.where(deliveries.c.id < before_id)
        q = q.order_by(deliveries.c.id.desc())
    q = q.limit(limit)
    async with state.reader.connect() as conn:
        rows = list(await conn.execute(q))
        attempts = await _attempts_for(conn, [r.id for r in rows])
    return {"items": [_out(r, attempts[r.id]) for r in rows]}


@router.get("/deliveries/{delivery_id}")
async def get_delivery(
    delivery_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        await lookups.delivery(conn, principal, delivery_id)
        row = (await conn.execute(_base().where(deliveries.c.id == delivery_id))).one()
        attempts = await _attempts_for(conn, [delivery_id])
    return _out(row, attempts[delivery_id])


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202)
async def redeliver(
    delivery_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Start a new series of attempts on the same delivery (same id for the receiver)."""
    async with state.engine.begin() as conn:
        found = await lookups.delivery(conn, principal, delivery_id)
        principal.require_manage(found._org, "redeliver notifications")
        await redelivery.restart(conn, deliveries.c.id == delivery_id)
        row = (await conn.execute(_base().where(deliveries.c.id == delivery_id))).one()
        attempts = await _attempts_for(conn, [delivery_id])
    state.wakeup.poke()
    return _out(row, attempts[delivery_id])


class RedeliverFailed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: StrictInt
    since: datetime  # ISO 8601; deliveries that failed at or after this time
    channel_id: StrictInt | None = None


@router.post("/deliveries/redeliver-failed", status_code=202)
async def redeliver_failed(
    body: RedeliverFailed,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Start a new series on every delivery that failed since ``since`` (bulk redeliver)."""
    principal.require_manage(body.organization_id, "redeliver notifications")
    since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
    async with state.engine.begin() as conn:
        if body.channel_id is not None:
            row = await lookups.channel(conn, principal, body.channel_id)
            if row.organization_id != body.organization_id:
                raise invalid("channel_id", "this channel belongs to another organization")
        ids = await redelivery.restart_failed_since(
            conn, body.organization_id, since, channel_id=body.channel_id
        )
    if ids:
        state.wakeup.poke()
    return {"redelivered": len(ids), "ids": ids}
