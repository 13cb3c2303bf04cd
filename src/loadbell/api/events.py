"""The immutable event records."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query

from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.services import access as lookups
from loadbell.services.access import Principal
from loadbell.store.tables import events

router = APIRouter(tags=["events"])


@router.get("/events")
async def list_events(
    run_id: int | None = None,
    project_id: int | None = None,
    type: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    before_id: int | None = None,
    after_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    q = sa.select(events).where(events.c.organization_id.in_(list(principal.roles)))
    async with state.reader.connect() as conn:
        if run_id is not None:
            await lookups.run(conn, principal, run_id)
            # A run's events in the order they happened, paged forward.
            q = q.where(events.c.run_id == run_id).order_by(events.c.id)
            if after_id is not None:
                q = q.where(events.c.id > after_id)
        else:
            q = q.order_by(events.c.id.desc())
            if before_id is not None:
                q = q.where(events.c.id < before_id)
        if project_id is not None:
            q = q.where(events.c.project_id == project_id)
        if type is not None:
            q = q.where(events.c.type == type)
        rows = await conn.execute(q.limit(limit))
        return {
            "items": [
                {
                    "id": r.id,
                    "type": r.type,
                    "occurred_at": r.occurred_at,
                    "organization_id": r.organization_id,
                    "project_id": r.project_id,
                    "load_test_id": r.load_test_id,
                    "run_id": r.run_id,
                    "context": r.context,
                }
                for r in rows
            ]
        }
