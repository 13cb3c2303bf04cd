"""Who is asking, and what they may see.

A :class:`Principal` is the caller with their role in each organization they belong to
(narrowed to a token's organization when it has one). A resource of an organization the
caller cannot see is :class:`NotFound`, never :class:`Forbidden`, so a caller learns nothing
about other organizations; a member who can see a resource but may not change it gets
:class:`Forbidden`. The lookups below read a row only when the caller may see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.roles import Role
from loadbell.services.errors import forbidden, invalid, not_found
from loadbell.store.tables import MAX_ID, channels, deliveries, load_tests, projects, runs


@dataclass(frozen=True)
class Principal:
    user_id: int
    user_name: str
    token_id: int
    scoped_org: int | None
    roles: dict[int, Role]  # organization id -> role, already narrowed to the token's scope

    def role_in(self, organization_id: int) -> Role:
        role = self.roles.get(organization_id)
        if role is None:
            raise not_found("organization", organization_id)
        return role

    def require_manage(self, organization_id: int, what: str = "change channels") -> None:
        if not self.role_in(organization_id).can_manage:
            raise forbidden(
                f"only owners and admins may {what}; your role in organization "
                f"{organization_id} is member"
            )


def known_id(what: str, ident: int) -> None:
    """NotFound for an id no row can have: PostgreSQL could not even compare it."""
    if not 1 <= ident <= MAX_ID:
        raise not_found(what, ident)


async def filter_target(
    conn: AsyncConnection, principal: Principal, table: sa.Table, ident: int, what: str
) -> None:
    """NotFound unless the caller may see row ``ident`` of ``table`` (an id a list is
    filtered by), with the message a direct read gives. A deleted row of the caller's own
    organization passes: its history (deliveries of a deleted channel, events of a deleted
    project) stays in the lists."""
    known_id(what, ident)
    org = (
        await conn.execute(sa.select(table.c.organization_id).where(table.c.id == ident))
    ).scalar()
    if org is None or org not in principal.roles:
        raise not_found(what, ident)


async def _visible(
    conn: AsyncConnection,
    principal: Principal,
    table: sa.Table,
    ident: int,
    what: str,
    org_column: sa.ColumnElement[Any],
    *joins: tuple[sa.Table, sa.ColumnElement[bool]],
) -> sa.Row[Any]:
    known_id(what, ident)
    q = sa.select(table, org_column.label("_org")).where(table.c.id == ident)
    for other, on in joins:
        q = q.join(other, on)
    if "deleted_at" in table.c:
        q = q.where(table.c.deleted_at.is_(None))
    row = (await conn.execute(q)).first()
    if row is None or row._org not in principal.roles:
        raise not_found(what, ident)
    return row


async def project(conn: AsyncConnection, principal: Principal, ident: int) -> sa.Row[Any]:
    return await _visible(conn, principal, projects, ident, "project", projects.c.organization_id)


async def load_test(conn: AsyncConnection, principal: Principal, ident: int) -> sa.Row[Any]:
    return await _visible(
        conn,
        principal,
        load_tests,
        ident,
        "load test",
        projects.c.organization_id,
        (
            projects,
            sa.and_(projects.c.id == load_tests.c.project_id, projects.c.deleted_at.is_(None)),
        ),
    )


async def run(conn: AsyncConnection, principal: Principal, ident: int) -> sa.Row[Any]:
    return await _visible(conn, principal, runs, ident, "run", runs.c.organization_id)


async def channel(conn: AsyncConnection, principal: Principal, ident: int) -> sa.Row[Any]:
    return await _visible(conn, principal, channels, ident, "channel", channels.c.organization_id)


async def delivery(conn: AsyncConnection, principal: Principal, ident: int) -> sa.Row[Any]:
    return await _visible(
        conn,
        principal,
        deliveries,
        ident,
        "delivery",
        channels.c.organization_id,
        (channels, channels.c.id == deliveries.c.channel_id),
    )


def cursor(field: str, ident: int | None) -> int | None:
    """A page cursor (``before_id``, ``after_id``) as given, or Invalid naming ``field``
    when no row could have it (the API's query checks say the same; the pages rely on this)."""
    if ident is not None and not 1 <= ident <= MAX_ID:
        raise invalid(field, f"give an id from 1 to {MAX_ID}, as a previous page gave it")
    return ident


def page_limit(limit: int) -> int:
    return max(1, min(limit, 500))
