"""Liveness and readiness: the database answers and the worker (if any) runs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from loadbell.api.state import AppState, get_state

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request, state: AppState = Depends(get_state)) -> Any:
    body: dict[str, Any] = {"status": "ok", "database": "ok"}
    try:
        async with state.reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            await conn.rollback()
    except Exception as exc:
        body.update(status="error", database=f"unreachable: {exc.__class__.__name__}")
    task = getattr(request.app.state, "worker_task", None)
    if task is None:
        body["worker"] = "not in this process"
    elif task.done():
        body.update(status="error", worker="stopped")
    else:
        body["worker"] = "running"
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
