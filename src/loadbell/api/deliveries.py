"""The delivery log and redelivery: the API edge of ``services/deliveries.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict

from loadbell.api.auth import current_principal
from loadbell.api.models import Id
from loadbell.api.responses import (
    BODY,
    COMMON,
    DeliveryDetailOut,
    DeliveryList,
    ForwardedRequestOut,
    RedeliveredOut,
    errors,
    ok,
)
from loadbell.api.state import AppState, get_state
from loadbell.services import deliveries, forwarding
from loadbell.services.access import Principal
from loadbell.store.tables import MAX_ID

router = APIRouter(tags=["deliveries"], responses=COMMON)


@router.get(
    "/deliveries",
    response_model=None,
    responses={**ok(DeliveryList), **errors(404)},
)
async def list_deliveries(
    channel_id: int | None = Query(None, ge=1, le=MAX_ID),
    run_id: int | None = Query(None, ge=1, le=MAX_ID),
    status: str | None = None,
    event_type: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    after_id: int | None = Query(None, ge=1, le=MAX_ID),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    """Newest first, paged with ``before_id``; with ``run_id``, in event order, paged with
    ``after_id``. A ``channel_id`` or ``run_id`` the token cannot see is a 404."""
    # A list: off the event loop's thread (store/db.py: slow_reader).
    async with state.slow_reader.connect() as conn:
        page = await deliveries.list_deliveries(
            conn,
            principal,
            channel_id=channel_id,
            run_id=run_id,
            status=status,
            event_type=event_type,
            limit=limit,
            before_id=before_id,
            after_id=after_id,
        )
    # orjson straight away: FastAPI's generic encoder took 5-10 ms for a page of 100 with
    # their attempts, on the loop's thread (the same JSON: datetimes in ISO 8601).
    return Response(orjson.dumps(page), media_type="application/json")


@router.get(
    "/deliveries/{delivery_id}",
    response_model=None,
    responses={**ok(DeliveryDetailOut), **errors(404)},
)
async def get_delivery(
    delivery_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return await deliveries.get_delivery(conn, principal, delivery_id)


@router.get(
    "/deliveries/{delivery_id}/request",
    response_model=None,
    responses={**ok(ForwardedRequestOut), **errors(403, 404, 409)},
)
async def get_rendered_request(
    delivery_id: int,
    response: Response,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The delivery's request as its channel sends it now: method, headers (a webhook's
    signature made afresh) and body, for ``loadbell forward``. Owners and admins only:
    it carries a valid signature. Nothing is sent or stored."""
    async with state.reader.connect() as conn:
        out = await forwarding.rendered_request(
            conn, state.box, principal, delivery_id, public_url=state.settings.base_url
        )
    response.headers["Cache-Control"] = "no-store"  # a signature and custom header values
    return out


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=None,
    responses={
        **ok(DeliveryDetailOut, 202, "The delivery, pending in a new series"),
        **errors(403, 404, 409),
    },
)
async def redeliver(
    delivery_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Start a new series of attempts on the same delivery (same id for the receiver).
    A delivery of a deleted channel is a 409."""
    async with state.engine.begin() as conn:
        out = await deliveries.redeliver(conn, principal, delivery_id)
    state.wakeup.poke()
    return out


class RedeliverFailed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: Id
    since: datetime  # ISO 8601; deliveries that failed at or after this time
    channel_id: Id | None = None


@router.post(
    "/deliveries/redeliver-failed",
    status_code=202,
    response_model=None,
    responses={
        **ok(RedeliveredOut, 202, "How many deliveries start a new series"),
        **BODY,
        **errors(403, 404),
    },
)
async def redeliver_failed(
    body: RedeliverFailed,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Start a new series on every delivery that failed since ``since`` (bulk redeliver)."""
    async with state.engine.begin() as conn:
        ids = await deliveries.redeliver_failed(
            conn, principal, body.organization_id, body.since, channel_id=body.channel_id
        )
    if ids:
        state.wakeup.poke()
    return {"redelivered": len(ids), "ids": ids}
