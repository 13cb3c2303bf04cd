"""Projects: create, read, rename, delete. Each change emits a ``project.*`` event (seed 004)
in the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.events import EventType
from loadbell.security.secretbox import SecretBox
from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.fanout import record_event
from loadbell.store.context import project_context
from loadbell.store.tables import projects


def view(row: Any) -> dict[str, Any]:
    """A project as the edges show it."""
    return {
        "id": row.id,
        "organization_id": row.organization_id,
        "name": row.name,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def _emit(
    conn: AsyncConnection,
    box: SecretBox,
    event: EventType,
    project_id: int,
    extra: dict[str, Any] | None = None,
) -> None:
    ctx = await project_context(conn, project_id)
    ctx["extra"] = extra or {}
    await record_event(
        conn,
        box,
        event_type=event,
        organization_id=ctx["organization"]["id"],
        project_id=project_id,
        context=ctx,
    )


async def _row(conn: AsyncConnection, project_id: int) -> Any:
    return (await conn.execute(sa.select(projects).where(projects.c.id == project_id))).one()


async def list_projects(
    conn: AsyncConnection, principal: Principal, organization_id: int | None = None
) -> list[dict[str, Any]]:
    orgs = list(principal.roles)
    if organization_id is not None:
        principal.role_in(organization_id)
        orgs = [organization_id]
    rows = await conn.execute(
        sa.select(projects)
        .where(projects.c.organization_id.in_(orgs))
        .where(projects.c.deleted_at.is_(None))
        .order_by(projects.c.id)
    )
    return [view(r) for r in rows]


async def create_project(
    conn: AsyncConnection, box: SecretBox, principal: Principal, organization_id: int, name: str
) -> dict[str, Any]:
    principal.require_manage(organization_id, "create projects")
    pid = (
        await conn.execute(
            sa.insert(projects)
            .values(organization_id=organization_id, name=name.strip())
            .returning(projects.c.id)
        )
    ).scalar_one()
    await _emit(conn, box, EventType.PROJECT_CREATED, pid)
    return view(await _row(conn, pid))


async def get_project(
    conn: AsyncConnection, principal: Principal, project_id: int
) -> dict[str, Any]:
    return view(await access.project(conn, principal, project_id))


async def rename_project(
    conn: AsyncConnection, box: SecretBox, principal: Principal, project_id: int, name: str
) -> dict[str, Any]:
    row = await access.project(conn, principal, project_id)
    principal.require_manage(row.organization_id, "change projects")
    name = name.strip()
    if name != row.name:
        await conn.execute(
            sa.update(projects)
            .where(projects.c.id == project_id)
            .values(name=name, updated_at=datetime.now(UTC))
        )
        await _emit(
            conn,
            box,
            EventType.PROJECT_UPDATED,
            project_id,
            {"changes": {"name": [row.name, name]}},
        )
    return view(await _row(conn, project_id))


async def delete_project(
    conn: AsyncConnection, box: SecretBox, principal: Principal, project_id: int
) -> None:
    row = await access.project(conn, principal, project_id)
    principal.require_manage(row.organization_id, "delete projects")
    # The event is staged first, while the project's own channels can still receive it.
    await _emit(conn, box, EventType.PROJECT_DELETED, project_id)
    await conn.execute(
        sa.update(projects).where(projects.c.id == project_id).values(deleted_at=datetime.now(UTC))
    )
