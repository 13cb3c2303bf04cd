"""Organizations, users, memberships and tokens: staging functions (callers commit)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.roles import Role
from loadbell.security.tokens import display_prefix, hash_token, new_token
from loadbell.store.tables import api_tokens, memberships, organizations, projects, users


async def create_organization(conn: AsyncConnection, name: str, owner_id: int) -> int:
    org_id = (
        await conn.execute(sa.insert(organizations).values(name=name).returning(organizations.c.id))
    ).scalar_one()
    await add_member(conn, org_id, owner_id, Role.OWNER)
    return int(org_id)


async def create_user(conn: AsyncConnection, name: str, email: str | None = None) -> int:
    return int(
        (
            await conn.execute(
                sa.insert(users).values(name=name, email=email).returning(users.c.id)
            )
        ).scalar_one()
    )


async def add_member(conn: AsyncConnection, org_id: int, user_id: int, role: Role) -> None:
    await conn.execute(
        sa.insert(memberships).values(organization_id=org_id, user_id=user_id, role=role.value)
    )


async def issue_token(
    conn: AsyncConnection, user_id: int, name: str, organization_id: int | None
) -> str:
    """Create a token and return it. This is the only time the plain token exists."""
    token = new_token()
    await conn.execute(
        sa.insert(api_tokens).values(
            user_id=user_id,
            organization_id=organization_id,
            name=name,
            token_hash=hash_token(token),
            prefix=display_prefix(token),
        )
    )
    return token


async def is_empty(conn: AsyncConnection) -> bool:
    return (
        await conn.execute(sa.select(sa.func.count()).select_from(organizations))
    ).scalar_one() == 0


async def bootstrap(conn: AsyncConnection) -> str:
    """First run: "Default Organization", "Default Project", an owner, and the owner's token."""
    owner = await create_user(conn, "owner")
    org_id = await create_organization(conn, "Default Organization", owner)
    await conn.execute(sa.insert(projects).values(organization_id=org_id, name="Default Project"))
    return await issue_token(conn, owner, "owner (first run)", None)


async def service_token(conn: AsyncConnection, organization_id: int, role: Role, name: str) -> str:
    """A token for scripts: a service user with ``role`` in one organization only."""
    exists = (
        await conn.execute(
            sa.select(organizations.c.id).where(organizations.c.id == organization_id)
        )
    ).first()
    if exists is None:
        raise LookupError(f"organization {organization_id} does not exist")
    user_id = await create_user(conn, name)
    await add_member(conn, organization_id, user_id, role)
    return await issue_token(conn, user_id, name, organization_id)
