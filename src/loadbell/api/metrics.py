"""``GET /metrics``: this process's Prometheus metrics (docs/metrics.md), and those of
``serve``'s worker process when it has one.

With ``LOADBELL_METRICS_TOKEN`` set, a scrape needs ``Authorization: Bearer <token>`` (401
otherwise); unset, it is open, like ``/healthz``. Not in the OpenAPI document: its answer is
Prometheus's text format, for Prometheus, not a JSON operation of the API. Exempt from
admission (api/admission.py), so an overloaded server still reports.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from loadbell.api.state import AppState, get_state
from loadbell.monitoring.exposition import CONTENT_TYPE, UNAUTHORIZED, authorized, merge, scrape
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

    child = getattr(request.app.state, "worker_child", None)
    if child is None:
        return Response(await scrape(state.metrics, backlog), media_type=CONTENT_TYPE)
    # serve's worker process counts its own figures; they join serve's here, so one scrape
    # still has both. While it does not answer, serve says loadbell_worker_up 0 for it.
    theirs = await child.scrape()
    state.metrics.worker_absent(theirs is None)
    ours = await scrape(state.metrics, backlog)
    return Response(merge(ours, theirs) if theirs else ours, media_type=CONTENT_TYPE)
