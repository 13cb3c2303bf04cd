"""The immutable event records: the API edge of ``services/events.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from loadbell.api.auth import current_principal
from loadbell.api.responses import COMMON, EventList, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.services import events
from loadbell.services.access import Principal
from loadbell.store.tables import MAX_ID

router = APIRouter(tags=["events"], responses=COMMON)


@router.get("/events", response_model=None, responses={**ok(EventList), **errors(404)})
async def list_events(
    run_id: int | None = Query(None, ge=1, le=MAX_ID),
    project_id: int | None = Query(None, ge=1, le=MAX_ID),
    type: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    after_id: int | None = Query(None, ge=1, le=MAX_ID),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Newest first, paged with ``before_id``; with ``run_id``, oldest first, paged with
    ``after_id``. A ``run_id`` or ``project_id`` the token cannot see is a 404."""
    # A list: off the event loop's thread (store/db.py: slow_reader).
    async with state.slow_reader.connect() as conn:
        return await events.list_events(
            conn,
            principal,
            run_id=run_id,
            project_id=project_id,
            type=type,
            limit=limit,
            before_id=before_id,
            after_id=after_id,
        )
