"""Inbound sources and the runs they made: staging functions (callers commit).

A source is found by its token's SHA-256 (``security/tokens.py``). The lookup by hash is an
index probe; the final comparison is constant-time, and a miss compares against a stand-in
hash too, so a wrong token costs what a right one does.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.security.tokens import hash_token, new_inbound_token
from loadbell.store.tables import inbound_runs, inbound_sources, load_tests, projects, runs

_STAND_IN = "0" * 64  # what a missing token is compared against


async def add_source(
    conn: AsyncConnection,
    *,
    organization_id: int,
    project_id: int,
    kind: str,
    name: str,
    user_id: int,
) -> tuple[dict[str, Any], str]:
    """Insert a source; returns its row and its token (the only time the token exists)."""
    token = new_inbound_token()
    row = (
        await conn.execute(
            sa.insert(inbound_sources)
            .values(
                organization_id=organization_id,
                project_id=project_id,
                kind=kind,
                name=name,
                token_hash=hash_token(token),
                user_id=user_id,
            )
            .returning(*_SHOWN)
        )
    ).one()
    return dict(row._mapping), token


_SHOWN = (
    inbound_sources.c.id,
    inbound_sources.c.organization_id,
    inbound_sources.c.project_id,
    inbound_sources.c.kind,
    inbound_sources.c.name,
    inbound_sources.c.created_at,
)


async def list_sources(conn: AsyncConnection, project_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(*_SHOWN)
        .where(inbound_sources.c.project_id == project_id, inbound_sources.c.revoked_at.is_(None))
        .order_by(inbound_sources.c.id)
    )
    return [dict(r._mapping) for r in rows]


async def live_source(conn: AsyncConnection, source_id: int) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            sa.select(*_SHOWN).where(
                inbound_sources.c.id == source_id, inbound_sources.c.revoked_at.is_(None)
            )
        )
    ).first()
    return dict(row._mapping) if row is not None else None


async def revoke_source(conn: AsyncConnection, source_id: int) -> None:
    await conn.execute(
        sa.update(inbound_sources)
        .where(inbound_sources.c.id == source_id)
        .values(revoked_at=datetime.now(UTC))
    )


async def source_by_token(conn: AsyncConnection, token: str, kind: str) -> dict[str, Any] | None:
    """The live source of ``kind`` this token opens, or None (wrong, revoked, other kind)."""
    wanted = hash_token(token)
    row = (
        await conn.execute(
            sa.select(*_SHOWN, inbound_sources.c.token_hash, inbound_sources.c.user_id).where(
                inbound_sources.c.token_hash == wanted,
                inbound_sources.c.revoked_at.is_(None),
                inbound_sources.c.kind == kind,
            )
        )
    ).first()
    stored = row.token_hash if row is not None else _STAND_IN
    if not hmac.compare_digest(stored, wanted) or row is None:
        return None
    return dict(row._mapping)


async def run_of(conn: AsyncConnection, source_id: int, external_id: int) -> tuple[int, int] | None:
    """The loadbell run (id, load test id) the sender's run ``external_id`` became, if any."""
    row = (
        await conn.execute(
            sa.select(runs.c.id, runs.c.load_test_id)
            .join(runs, runs.c.id == inbound_runs.c.run_id)
            .where(inbound_runs.c.source_id == source_id, inbound_runs.c.external_id == external_id)
        )
    ).first()
    return (int(row.id), int(row.load_test_id)) if row is not None else None


async def lock_project(conn: AsyncConnection, project_id: int) -> bool:
    """Lock the live project's row until commit (PostgreSQL); False if it was deleted."""
    found = (
        await conn.execute(
            sa.select(projects.c.id)
            .where(projects.c.id == project_id, projects.c.deleted_at.is_(None))
            .with_for_update()
        )
    ).first()
    return found is not None


async def load_test_of(
    conn: AsyncConnection, source_id: int, external_load_test_id: int
) -> int | None:
    """The loadbell load test of an earlier run of the sender's load test, if any: it keeps
    the two together when the sender renames its load test."""
    return (
        await conn.execute(
            sa.select(runs.c.load_test_id)
            .join(runs, runs.c.id == inbound_runs.c.run_id)
            .join(load_tests, load_tests.c.id == runs.c.load_test_id)
            .where(
                inbound_runs.c.source_id == source_id,
                inbound_runs.c.external_load_test_id == external_load_test_id,
                load_tests.c.deleted_at.is_(None),
            )
            .order_by(inbound_runs.c.id.desc())
            .limit(1)
        )
    ).scalar()


async def link_run(
    conn: AsyncConnection,
    *,
    source_id: int,
    external_id: int,
    external_load_test_id: int,
    run_id: int,
    url: str,
    load_test_url: str,
) -> None:
    await conn.execute(
        sa.insert(inbound_runs).values(
            source_id=source_id,
            external_id=external_id,
            external_load_test_id=external_load_test_id,
            run_id=run_id,
            url=url,
            load_test_url=load_test_url,
        )
    )
