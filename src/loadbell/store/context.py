"""Event context: the frozen facts a notification is rendered from.

Shape (every key always present; values may be null)::

    {"organization": {"id", "name"},
     "project": {"id", "name"},
     "load_test": {"id", "name"} | null,
     "run": {"id", "status", "status_text", "result", "trigger", "user_id", "user_name",
             "created_at", "started_at", "ended_at", "duration_s", "metrics", "url",
             "comparison"} | null,   # comparison: with the baseline, once finished, or null
     "extra": {...}}   # event-specific additions, e.g. the changed fields
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.statuses import RunStatus
from loadbell.store import postgres_sql
from loadbell.store.inline_sql import read_run_with_names, sqlite3_of
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
        # With the baseline run (domain/regression.py), set when the run finished; events
        # stored before baselines existed have none.
        "comparison": m.get("comparison"),
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


# One statement for a run and the names its context shows. Built once: composing a
# statement costs more CPU than SQLite spends running it, and this one runs on every
# run update.
_RUN_WITH_NAMES = (
    sa.select(
        runs,
        users.c.name.label("user_name"),
        load_tests.c.name.label("load_test_name"),
        projects.c.name.label("project_name"),
        organizations.c.name.label("organization_name"),
    )
    .outerjoin(users, users.c.id == runs.c.user_id)
    .join(load_tests, load_tests.c.id == runs.c.load_test_id)
    .join(projects, projects.c.id == load_tests.c.project_id)
    .join(organizations, organizations.c.id == projects.c.organization_id)
    .where(runs.c.id == sa.bindparam("b_run_id"))
)
_RUN_WITH_NAMES_LOCKED = _RUN_WITH_NAMES.with_for_update(of=runs)


async def run_with_names(
    conn: AsyncConnection, run_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    """The run's row plus ``user_name``, ``load_test_name``, ``project_name`` and
    ``organization_name``; with ``lock``, the run row is locked (PostgreSQL) until commit."""
    raw = sqlite3_of(conn)
    if raw is not None:  # SQLite locks by BEGIN IMMEDIATE: no row lock to take
        return read_run_with_names(raw, run_id)
    pg = postgres_sql.asyncpg_of(conn)
    if pg is not None:  # the transaction has begun: not the first statement
        return await postgres_sql.run_with_names(pg, run_id, lock=lock)
    q = _RUN_WITH_NAMES_LOCKED if lock else _RUN_WITH_NAMES
    row = (await conn.execute(q, {"b_run_id": run_id})).first()
    return dict(row._mapping) if row is not None else None


def context_of_run(run: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """The event context of a run, from a mapping shaped like :func:`run_with_names`."""
    return {
        "organization": {"id": run["organization_id"], "name": run["organization_name"]},
        "project": {"id": run["project_id"], "name": run["project_name"]},
        "load_test": {"id": run["load_test_id"], "name": run["load_test_name"]},
        "run": run_dict(run, run["user_name"], public_url),
        "extra": {},
    }


async def run_context(conn: AsyncConnection, run_id: int, public_url: str) -> dict[str, Any]:
    run = await run_with_names(conn, run_id)
    if run is None:
        raise LookupError(f"run {run_id} does not exist")
    return context_of_run(run, public_url)
