"""Liveness and readiness: the database answers and the worker (if any) runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from loadbell.api.responses import HealthOut, ok
from loadbell.api.state import AppState, get_state

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

# Seconds the database may take to answer ``SELECT 1`` before it counts as unreachable: a
# load balancer's probe must get an answer, not a hang.
PROBE_TIMEOUT = 3.0


# No token, no parameters: only these two answers (the same body).
_ANSWERS = {
    **ok(HealthOut, 200, "The database answers, and the worker runs (or is elsewhere)"),
    **ok(HealthOut, 503, "The database does not answer, or serve's worker stopped"),
}


@router.get("/healthz", response_model=None, responses=_ANSWERS)
async def healthz(request: Request, state: AppState = Depends(get_state)) -> Any:
    body: dict[str, Any] = {"status": "ok", "database": "ok"}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT), state.reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            await conn.rollback()
    except Exception as exc:
        # The cause goes to the log, not to an unauthenticated caller.
        log.warning("healthz: database unreachable: %s: %s", exc.__class__.__name__, exc)
        body.update(status="error", database="unreachable")
    task = getattr(request.app.state, "worker_task", None)
    child = getattr(request.app.state, "worker_child", None)
    worker = state.worker
    if child is not None:  # serve's worker process (delivery/child.py)
        if child.running:
            body.update(worker="running", worker_pid=child.pid)
        else:
            body.update(status="error", worker=child.state)
    elif task is None:
        body["worker"] = "not in this process"
    elif task.done():
        body.update(status="error", worker="stopped")
    elif worker is not None and worker.outage.down:
        body["worker"] = "waiting for the database"
    else:
        body["worker"] = "running"
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
