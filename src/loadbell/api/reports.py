"""Live reports of a run, sent by the integrations (k6 wrapper, Locust plugin, generic command).

- ``POST /runs/{id}/reports``: an intermediate snapshot (the metrics document of
  ``domain/metrics.py``). Stored for the run page's charts, emits
  ``test.report_intermediate``, and changes nothing in the run's final metrics.
- ``GET /runs/{id}/reports``: the series, oldest first.
- ``POST /runs/{id}/threshold-failures``: a threshold crossed during the run. Emits
  ``test.threshold_failed`` once per (metric, expression) per run; repeats answer 200 with
  ``"emitted": false``.
- ``POST /runs/{id}/report-available``: after the run ended, emits
  ``test.report_available`` (once) with the link to the run page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from loadbell.api.auth import current_principal
from loadbell.api.models import Line, Metrics, Number
from loadbell.api.responses import (
    BODY,
    COMMON,
    ReportAvailableOut,
    ReportOut,
    ReportPage,
    ThresholdFailureOut,
    errors,
    ok,
)
from loadbell.api.state import AppState, get_state
from loadbell.services import reports
from loadbell.services.access import Principal
from loadbell.store.tables import MAX_ID

router = APIRouter(tags=["reports"], responses=COMMON)


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: Metrics


class ThresholdFailureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: Line = Field(description="e.g. http_req_duration")
    expression: Line = Field(
        default="*",
        description="e.g. p(95)<500; '*' when only the metric is known to be failing",
    )
    value: Number | None = Field(default=None, description="the observed value, if known")


@router.post(
    "/runs/{run_id}/reports",
    status_code=201,
    response_model=None,
    responses={**ok(ReportOut, 201), **BODY, **errors(404, 409)},
)
async def add_report(
    run_id: int,
    body: ReportIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    handoff = state.handoff()
    async with state.engine.begin() as conn:
        report, ids = await reports.add_report(
            conn,
            state.box,
            principal,
            run_id,
            body.metrics.document(),
            state.settings.base_url,
            handoff,
        )
    state.staged(ids, handoff)
    return report


@router.get(
    "/runs/{run_id}/reports", response_model=None, responses={**ok(ReportPage), **errors(404)}
)
async def list_reports(
    run_id: int,
    after_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(1000, ge=1, le=10_000),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    # Up to 10,000 rows: off the event loop's thread (store/db.py: slow_reader).
    async with state.slow_reader.connect() as conn:
        items = await reports.list_reports(conn, principal, run_id, after_id=after_id, limit=limit)
    return {"items": items, "next_after_id": items[-1]["id"] if len(items) == limit else None}


@router.post(
    "/runs/{run_id}/threshold-failures",
    status_code=201,
    response_model=None,
    responses={
        **ok(ThresholdFailureOut, 201, "Reported: test.threshold_failed is sent"),
        **ok(ThresholdFailureOut, 200, "Already reported for this run: nothing is sent"),
        **BODY,
        **errors(404, 409),
    },
)
async def threshold_failed(
    run_id: int,
    body: ThresholdFailureIn,
    response: Response,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    handoff = state.handoff()
    async with state.engine.begin() as conn:
        ids = await reports.record_threshold_failure(
            conn,
            state.box,
            principal,
            run_id,
            metric=body.metric,
            expression=body.expression,
            value=body.value,
            public_url=state.settings.base_url,
            handoff=handoff,
        )
    if ids is None:
        response.status_code = 200
    else:
        state.staged(ids, handoff)
    return {"emitted": ids is not None, "metric": body.metric, "expression": body.expression}


@router.post(
    "/runs/{run_id}/report-available",
    status_code=201,
    response_model=None,
    responses={
        **ok(ReportAvailableOut, 201, "test.report_available is sent"),
        **ok(ReportAvailableOut, 200, "Already sent for this run"),
        **errors(404, 409),
    },
)
async def report_available(
    run_id: int,
    response: Response,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    handoff = state.handoff()
    async with state.engine.begin() as conn:
        ids = await reports.report_available(
            conn, state.box, principal, run_id, state.settings.base_url, handoff
        )
    if ids is None:
        response.status_code = 200
    else:
        state.staged(ids, handoff)
    url = f"{state.settings.base_url.rstrip('/')}/runs/{run_id}"
    return {"emitted": ids is not None, "report_url": url}
