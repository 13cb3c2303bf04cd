"""Organizations the caller belongs to."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.services.access import Principal
from loadbell.services.errors import forbidden
from loadbell.store.accounts import create_organization
from loadbell.store.tables import organizations

router = APIRouter(tags=["organizations"])


class OrganizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


def _out(row: Any, role: str) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "role": role, "created_at": row.created_at}


@router.get("/organizations")
async def list_organizations(
    principal: Principal = Depends(current_principal), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        rows = await conn.execute(
            sa.select(organizations)
            .where(organizations.c.id.in_(list(principal.roles)))
            .order_by(organizations.c.id)
        )
        return {"items": [_out(r, principal.roles[r.id].value) for r in rows]}


@router.post("/organizations", status_code=201)
async def create(
    body: OrganizationIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    if principal.scoped_org is not None:
        raise forbidden(
            "this token is limited to one organization and cannot create others; "
            "use a personal (unscoped) token"
        )
    async with state.engine.begin() as conn:
        org_id = await create_organization(conn, body.name.strip(), principal.user_id)
        row = (
            await conn.execute(sa.select(organizations).where(organizations.c.id == org_id))
        ).one()
    return _out(row, "owner")
