"""Event context: the frozen facts a notification is rendered from.

Shape (every key always present; values may be null)::

    {"organization": {"id", "name"},
     "project": {"id", "name"},
     "load_test": {"id", "name"} | null,
     "run": {"id", "status", "status_text", "result", "trigger", "user_id", "user_name",
             "created_at", "started_at", "ended_at", "duration_s", "metrics", "url"} | null,
     "extra": {...}}   # event-specific additions, e.g. the changed fields
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.statuses import RunStatus
from loadbell.store.tables import load_tests, organizations, projects, runs, users


def _iso(value: datetime | None) -> str | None:
    # Same spelling as the API's own datetimes (pydantic): UTC as "Z".
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def run_dict(row: Any, user_name: str | None, public_url: str) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    duration = None
    if m["started_at"] is not None and m["ended_at"] is not None:
        duration = round((m["ended_at"] - m["started_at"]).total_seconds(), 3)
    status = RunStatus(m["status"])
    return {
        "id": m["id"],
        "status": int(status),
        "status_text": status.text,
        "result": m["result"],
        "trigger": m["trigger"],
        "user_id": m["user_id"],
        "user_name": user_name,
        "created_at": _iso(m["created_at"]),
        "started_at": _iso(m["started_at"]),
        "ended_at": _iso(m["ended_at"]),
        "duration_s": duration,
        "metrics": m["metrics"] or {},
        "url": f"{public_url.rstrip('/')}/runs/{m['id']}",
    }


async def project_context(conn: AsyncConnection, project_id: int) -> dict[str, Any]:
    row = (
        await conn.execute(
            sa.select(
                projects.c.id,
                projects.c.name,
                organizations.c.id.label("org_id"),
                organizations.c.name.label("org_name"),
            )
            .join(organizations, organizations.c.id == projects.c.organization_id)
            .where(projects.c.id == project_id)
        )
    ).one()
    return {
        "organization": {"id": row.org_id, "name": row.org_name},
        "project": {"id": row.id, "name": row.name},
        "load_test": None,
        "run": None,
        "extra": {},
    }


async def load_test_context(conn: AsyncConnection, load_test_id: int) -> dict[str, Any]:
    lt = (await conn.execute(sa.select(load_tests).where(load_tests.c.id == load_test_id))).one()
    ctx = await project_context(conn, lt.project_id)
    ctx["load_test"] = {"id": lt.id, "name": lt.name}
    return ctx


async def run_context(conn: AsyncConnection, run_id: int, public_url: str) -> dict[str, Any]:
    run = (await conn.execute(sa.select(runs).where(runs.c.id == run_id))).one()
    user_name = (
        await conn.execute(sa.select(users.c.name).where(users.c.id == run.user_id))
    ).scalar()
    ctx = await load_test_context(conn, run.load_test_id)
    ctx["run"] = run_dict(run, user_name, public_url)
    return ctx
