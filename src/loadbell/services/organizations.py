"""Organizations the caller belongs to, and new ones."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.services.access import Principal
from loadbell.services.errors import forbidden
from loadbell.store.accounts import create_organization as _create
from loadbell.store.tables import organizations


def view(row: Any, role: str) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "role": role, "created_at": row.created_at}


async def list_organizations(conn: AsyncConnection, principal: Principal) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(organizations)
        .where(organizations.c.id.in_(list(principal.roles)))
        .order_by(organizations.c.id)
    )
    return [view(r, principal.roles[r.id].value) for r in rows]


async def create_organization(
    conn: AsyncConnection, principal: Principal, name: str
) -> dict[str, Any]:
    """A new organization with the caller as its owner."""
    if principal.scoped_org is not None:
        raise forbidden(
            "this token is limited to one organization and cannot create others; "
            "use a personal (unscoped) token"
        )
    org_id = await _create(conn, name.strip(), principal.user_id)
    row = (await conn.execute(sa.select(organizations).where(organizations.c.id == org_id))).one()
    return view(row, "owner")
