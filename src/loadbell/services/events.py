"""Events: the immutable records of what happened, as the caller may see them.

A filter naming a run or project the caller cannot see is a :class:`NotFound`, with the
message a direct read of it gives (``access.filter_target``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.events import EventType
from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.errors import invalid
from loadbell.store.tables import events, projects, runs


def checked_type(field: str, value: str) -> str:
    """``value`` when it names an event of the catalog, else Invalid naming ``field``."""
    if value not in {e.value for e in EventType}:
        raise invalid(field, f"'{value}' is not an event; use one of {', '.join(EventType)}")
    return value


def _view(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "type": r.type,
        "occurred_at": r.occurred_at,
        "organization_id": r.organization_id,
        "project_id": r.project_id,
        "load_test_id": r.load_test_id,
        "run_id": r.run_id,
        "context": r.context,
    }


async def list_events(
    conn: AsyncConnection,
    principal: Principal,
    *,
    run_id: int | None = None,
    project_id: int | None = None,
    type: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
    after_id: int | None = None,
) -> dict[str, Any]:
    """Newest first, paged with ``before_id``; with ``run_id``, the run's events in the
    order they happened, paged forward with ``after_id``."""
    q = sa.select(events).where(events.c.organization_id.in_(list(principal.roles)))
    if run_id is not None:
        await access.filter_target(conn, principal, runs, run_id, "run")
        q = q.where(events.c.run_id == run_id).order_by(events.c.id)
        if access.cursor("after_id", after_id) is not None:
            q = q.where(events.c.id > after_id)
    else:
        q = q.order_by(events.c.id.desc())
        if access.cursor("before_id", before_id) is not None:
            q = q.where(events.c.id < before_id)
    if project_id is not None:
        await access.filter_target(conn, principal, projects, project_id, "project")
        q = q.where(events.c.project_id == project_id)
    if type is not None:
        q = q.where(events.c.type == checked_type("type", type))
    rows = await conn.execute(q.limit(access.page_limit(limit)))
    return {"items": [_view(r) for r in rows]}
