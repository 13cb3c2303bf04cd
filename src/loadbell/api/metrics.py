"""``GET /metrics``: this process's Prometheus metrics (docs/metrics.md).

With ``LOADBELL_METRICS_TOKEN`` set, a scrape needs ``Authorization: Bearer <token>`` (401
otherwise); unset, it is open, like ``/healthz``. Not in the OpenAPI document: its answer is
Prometheus's text format, for Prometheus, not a JSON operation of the API. Exempt from
admission (api/admission.py), so an overloaded server still reports.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from loadbell.api.state import AppState, get_state
from loadbell.monitoring.exposition import CONTENT_TYPE, UNAUTHORIZED, authorized, scrape
from loadbell.store.backlog import read_backlog

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: AppState = Depends(get_state)) -> Response:
    if not authorized(request.headers.get("authorization"), state.settings.metrics_token):
        return Response(
            UNAUTHORIZED,
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )
    assert state.metrics is not None  # create_app always makes them

    async def backlog() -> tuple[int, int, float]:
        # Counts the backlog, which may be large: off the event loop's thread.
        async with state.slow_reader.connect() as conn:
            figures = await read_backlog(conn)
            await conn.rollback()
            return figures

    return Response(await scrape(state.metrics, backlog), media_type=CONTENT_TYPE)
