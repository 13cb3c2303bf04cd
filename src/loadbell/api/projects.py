"""Projects: the API edge of ``services/projects.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict

from loadbell.api.auth import current_principal
from loadbell.api.models import Id, Name
from loadbell.api.responses import BODY, COMMON, ProjectList, ProjectOut, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.services import projects
from loadbell.services.access import Principal

router = APIRouter(tags=["projects"], responses=COMMON)


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: Id
    name: Name


class ProjectPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


@router.get("/projects", response_model=None, responses={**ok(ProjectList), **errors(404)})
async def list_projects(
    organization_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return {"items": await projects.list_projects(conn, principal, organization_id)}


@router.post(
    "/projects",
    status_code=201,
    response_model=None,
    responses={**ok(ProjectOut, 201), **BODY, **errors(403, 404)},
)
async def create_project(
    body: ProjectIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        made = await projects.create_project(
            conn, state.box, principal, body.organization_id, body.name
        )
    state.wakeup.poke()
    return made


@router.get(
    "/projects/{project_id}", response_model=None, responses={**ok(ProjectOut), **errors(404)}
)
async def get_project(
    project_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return await projects.get_project(conn, principal, project_id)


@router.patch(
    "/projects/{project_id}",
    response_model=None,
    responses={**ok(ProjectOut), **BODY, **errors(403, 404)},
)
async def update_project(
    project_id: int,
    body: ProjectPatch,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        renamed = await projects.rename_project(conn, state.box, principal, project_id, body.name)
    state.wakeup.poke()
    return renamed


@router.delete(
    "/projects/{project_id}",
    status_code=204,
    response_model=None,
    responses={204: {"description": "Deleted"}, **errors(403, 404)},
)
async def delete_project(
    project_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        await projects.delete_project(conn, state.box, principal, project_id)
    state.wakeup.poke()
    return Response(status_code=204)
