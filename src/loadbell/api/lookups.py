"""Finding rows the caller may see. Anything outside the caller's organizations is a 404."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.api.auth import Principal
from loadbell.api.errors import not_found
from loadbell.store.tables import channels, deliveries, load_tests, projects, runs


async def _visible(
    conn: AsyncConnection,
    principal: Principal,
    table: sa.Table,
    ident: int,
    what: str,
    org_column: sa.ColumnElement[Any],
    *joins: tuple[sa.Table, sa.ColumnElement[bool]],
) -> sa.Row[Any]:
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


def page_limit(limit: int) -> int:
    return max(1, min(limit, 500))
