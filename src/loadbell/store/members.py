"""People of an organization: memberships, sign-in data and API tokens (web Members page).

Staging functions: callers own the transaction. The rules about roles (the last owner
stays) are operations of ``services/members.py``; the one rule kept here, next to the rows
it guards, is that an email address belongs to one user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.roles import Role
from loadbell.store.tables import api_tokens, memberships, users


class MembershipError(ValueError):
    """A change the rules refuse (an email another user has); the message is for the user."""


@dataclass(frozen=True)
class Member:
    user_id: int
    name: str
    email: str | None
    role: Role
    has_password: bool
    # A token's service user (``accounts.service_token``): no email, no password, signs in
    # only with a token scoped to this organization. The Members page lists it with the
    # tokens, not among people.
    service: bool = False


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    user_name: str
    role: Role | None
    organization_id: int | None
    created_at: datetime
    revoked_at: datetime | None
    user_id: int | None = None  # whom the token acts as


@dataclass(frozen=True)
class Account:
    user_id: int
    name: str
    email: str | None
    password_hash: str | None


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    """A sentence for the user when ``email`` does not look like an address."""
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or " " in email or len(email) > 320:
        return f"'{email}' is not an email address such as ana@example.com"
    return None


async def list_members(conn: AsyncConnection, organization_id: int) -> list[Member]:
    scoped_token = (
        sa.select(api_tokens.c.id)
        .where(api_tokens.c.user_id == users.c.id)
        .where(api_tokens.c.organization_id == organization_id)
        .exists()
    )
    service = sa.and_(users.c.email.is_(None), users.c.password_hash.is_(None), scoped_token)
    rows = await conn.execute(
        sa.select(
            users.c.id,
            users.c.name,
            users.c.email,
            users.c.password_hash,
            memberships.c.role,
            service.label("service"),
        )
        .join(memberships, memberships.c.user_id == users.c.id)
        .where(memberships.c.organization_id == organization_id)
        .order_by(users.c.name, users.c.id)
    )
    return [
        Member(r.id, r.name, r.email, Role(r.role), r.password_hash is not None, bool(r.service))
        for r in rows
    ]


async def account(conn: AsyncConnection, user_id: int) -> Account | None:
    row = (
        await conn.execute(
            sa.select(users.c.id, users.c.name, users.c.email, users.c.password_hash).where(
                users.c.id == user_id
            )
        )
    ).first()
    return Account(row.id, row.name, row.email, row.password_hash) if row else None


async def account_by_email(conn: AsyncConnection, email: str) -> Account | None:
    row = (
        await conn.execute(
            sa.select(users.c.id, users.c.name, users.c.email, users.c.password_hash).where(
                sa.func.lower(users.c.email) == normalize_email(email)
            )
        )
    ).first()
    return Account(row.id, row.name, row.email, row.password_hash) if row else None


async def set_sign_in(
    conn: AsyncConnection,
    user_id: int,
    *,
    email: str | None = None,
    password_hash: str | None = None,
    name: str | None = None,
) -> None:
    """Set a user's email, password hash and/or name. An email another user has is refused."""
    values: dict[str, str] = {}
    if email is not None:
        email = normalize_email(email)
        other = await account_by_email(conn, email)
        if other is not None and other.user_id != user_id:
            raise MembershipError(f"{email} already belongs to another user")
        values["email"] = email
    if password_hash is not None:
        values["password_hash"] = password_hash
    if name is not None:
        values["name"] = name
    if values:
        await conn.execute(sa.update(users).where(users.c.id == user_id).values(**values))


async def role_of(conn: AsyncConnection, organization_id: int, user_id: int) -> Role | None:
    role = (
        await conn.execute(
            sa.select(memberships.c.role)
            .where(memberships.c.organization_id == organization_id)
            .where(memberships.c.user_id == user_id)
        )
    ).scalar()
    return Role(role) if role else None


async def count_owners(conn: AsyncConnection, organization_id: int) -> int:
    return int(
        (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(memberships)
                .where(memberships.c.organization_id == organization_id)
                .where(memberships.c.role == Role.OWNER.value)
            )
        ).scalar_one()
    )


async def set_role(conn: AsyncConnection, organization_id: int, user_id: int, role: Role) -> None:
    await conn.execute(
        sa.update(memberships)
        .where(memberships.c.organization_id == organization_id)
        .where(memberships.c.user_id == user_id)
        .values(role=role.value)
    )


async def remove_membership(conn: AsyncConnection, organization_id: int, user_id: int) -> None:
    """Delete the membership and revoke the user's tokens scoped to this organization."""
    await conn.execute(
        sa.delete(memberships)
        .where(memberships.c.organization_id == organization_id)
        .where(memberships.c.user_id == user_id)
    )
    await conn.execute(
        sa.update(api_tokens)
        .where(api_tokens.c.user_id == user_id)
        .where(api_tokens.c.organization_id == organization_id)
        .where(api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def list_tokens(conn: AsyncConnection, organization_id: int) -> list[TokenInfo]:
    """Tokens that can act on this organization: scoped to it, or personal tokens of its
    members. Newest first, revoked ones included (they show as revoked)."""
    member_ids = sa.select(memberships.c.user_id).where(
        memberships.c.organization_id == organization_id
    )
    rows = await conn.execute(
        sa.select(api_tokens, users.c.name.label("user_name"), memberships.c.role)
        .join(users, users.c.id == api_tokens.c.user_id)
        .outerjoin(
            memberships,
            sa.and_(
                memberships.c.user_id == api_tokens.c.user_id,
                memberships.c.organization_id == organization_id,
            ),
        )
        .where(
            sa.or_(
                api_tokens.c.organization_id == organization_id,
                sa.and_(
                    api_tokens.c.organization_id.is_(None), api_tokens.c.user_id.in_(member_ids)
                ),
            )
        )
        .order_by(api_tokens.c.id.desc())
    )
    return [
        TokenInfo(
            r.id,
            r.name,
            r.prefix,
            r.user_name,
            Role(r.role) if r.role else None,
            r.organization_id,
            r.created_at,
            r.revoked_at,
            r.user_id,
        )
        for r in rows
    ]


async def revoke_token(conn: AsyncConnection, organization_id: int, token_id: int) -> bool:
    """Revoke a token listed for this organization. False when there is no such token."""
    if token_id not in {t.id for t in await list_tokens(conn, organization_id)}:
        return False
    await conn.execute(
        sa.update(api_tokens)
        .where(api_tokens.c.id == token_id)
        .where(api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return True
