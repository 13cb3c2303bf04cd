"""Organizations: the API edge of ``services/organizations.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from loadbell.api.auth import current_principal
from loadbell.api.models import Name
from loadbell.api.responses import BODY, COMMON, OrganizationList, OrganizationOut, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.services import organizations
from loadbell.services.access import Principal

router = APIRouter(tags=["organizations"], responses=COMMON)


class OrganizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


@router.get("/organizations", response_model=None, responses=ok(OrganizationList))
async def list_organizations(
    principal: Principal = Depends(current_principal), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return {"items": await organizations.list_organizations(conn, principal)}


@router.post(
    "/organizations",
    status_code=201,
    response_model=None,
    responses={**ok(OrganizationOut, 201), **BODY, **errors(403)},
)
async def create(
    body: OrganizationIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        return await organizations.create_organization(conn, principal, body.name)
