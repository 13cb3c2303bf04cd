"""Projects. Creating, renaming and deleting one emits project.* events (seed 004)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.domain.events import EventType
from loadbell.services import access as lookups
from loadbell.services.access import Principal
from loadbell.services.fanout import record_event
from loadbell.store.context import project_context
from loadbell.store.tables import projects

router = APIRouter(tags=["projects"])


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: StrictInt
    name: str = Field(min_length=1, max_length=200)


class ProjectPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


def out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "organization_id": row.organization_id,
        "name": row.name,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def _emit(
    state: AppState,
    conn: Any,
    event: EventType,
    project_id: int,
    extra: dict[str, Any] | None = None,
) -> None:
    ctx = await project_context(conn, project_id)
    ctx["extra"] = extra or {}
    await record_event(
        conn,
        state.box,
        event_type=event,
        organization_id=ctx["organization"]["id"],
        project_id=project_id,
        context=ctx,
    )


@router.get("/projects")
async def list_projects(
    organization_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    orgs = list(principal.roles)
    if organization_id is not None:
        principal.role_in(organization_id)
        orgs = [organization_id]
    async with state.reader.connect() as conn:
        rows = await conn.execute(
            sa.select(projects)
            .where(projects.c.organization_id.in_(orgs))
            .where(projects.c.deleted_at.is_(None))
            .order_by(projects.c.id)
        )
        return {"items": [out(r) for r in rows]}


@router.post("/projects", status_code=201)
async def create_project(
    body: ProjectIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    principal.require_manage(body.organization_id, "create projects")
    async with state.engine.begin() as conn:
        pid = (
            await conn.execute(
                sa.insert(projects)
                .values(organization_id=body.organization_id, name=body.name.strip())
                .returning(projects.c.id)
            )
        ).scalar_one()
        await _emit(state, conn, EventType.PROJECT_CREATED, pid)
        row = (await conn.execute(sa.select(projects).where(projects.c.id == pid))).one()
    state.wakeup.poke()
    return out(row)


@router.get("/projects/{project_id}")
async def get_project(
    project_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return out(await lookups.project(conn, principal, project_id))


@router.patch("/projects/{project_id}")
async def update_project(
    project_id: int,
    body: ProjectPatch,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        row = await lookups.project(conn, principal, project_id)
        principal.require_manage(row.organization_id, "change projects")
        name = body.name.strip()
        if name != row.name:
            await conn.execute(
                sa.update(projects)
                .where(projects.c.id == project_id)
                .values(name=name, updated_at=datetime.now(UTC))
            )
            await _emit(
                state,
                conn,
                EventType.PROJECT_UPDATED,
                project_id,
                {"changes": {"name": [row.name, name]}},
            )
        row = (await conn.execute(sa.select(projects).where(projects.c.id == project_id))).one()
    state.wakeup.poke()
    return out(row)


@router.delete("/projects/{project_id}", status_code=204)
async def delete_project(
    project_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        row = await lookups.project(conn, principal, project_id)
        principal.require_manage(row.organization_id, "delete projects")
        # The event is staged first, while the project's own channels can still receive it.
        await _emit(state, conn, EventType.PROJECT_DELETED, project_id)
        await conn.execute(
            sa.update(projects)
            .where(projects.c.id == project_id)
            .values(deleted_at=datetime.now(UTC))
        )
    state.wakeup.poke()
    return Response(status_code=204)
