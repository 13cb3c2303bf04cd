"""Load tests ("test builders" in Loadmance): create, read, rename, delete. Each change emits
a ``load_test.*`` event in the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.events import EventType
from loadbell.security.secretbox import SecretBox
from loadbell.services import access, baselines
from loadbell.services.access import Principal
from loadbell.services.errors import conflict
from loadbell.services.fanout import record_event
from loadbell.store.context import load_test_context
from loadbell.store.tables import load_tests, projects


def view(row: Any) -> dict[str, Any]:
    """A load test as the edges show it, from a row read with ``baselines.LATEST_PASSED``."""
    return {
        "id": row.id,
        "project_id": row.project_id,
        "name": row.name,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        **baselines.view(row),
    }


async def _emit(
    conn: AsyncConnection,
    box: SecretBox,
    event: EventType,
    load_test_id: int,
    extra: dict[str, Any] | None = None,
) -> None:
    ctx = await load_test_context(conn, load_test_id)
    ctx["extra"] = extra or {}
    await record_event(
        conn,
        box,
        event_type=event,
        organization_id=ctx["organization"]["id"],
        project_id=ctx["project"]["id"],
        load_test_id=load_test_id,
        context=ctx,
    )


async def find_by_name(conn: AsyncConnection, project_id: int, name: str) -> Any:
    """The live load test of that name, with the project row locked until the caller commits.

    Every caller may go on to create or rename a load test; the lock keeps two concurrent
    requests from both missing the name and creating it twice (PostgreSQL; SQLite's
    BEGIN IMMEDIATE already serialises writers).
    """
    await conn.execute(
        sa.select(projects.c.id).where(projects.c.id == project_id).with_for_update()
    )
    return (
        await conn.execute(
            sa.select(load_tests)
            .where(load_tests.c.project_id == project_id)
            .where(load_tests.c.name == name)
            .where(load_tests.c.deleted_at.is_(None))
        )
    ).first()


async def add(conn: AsyncConnection, box: SecretBox, project_id: int, name: str) -> int:
    """Insert a load test (the caller checked the name is free) and emit its event."""
    lt_id = (
        await conn.execute(
            sa.insert(load_tests)
            .values(project_id=project_id, name=name)
            .returning(load_tests.c.id)
        )
    ).scalar_one()
    await _emit(conn, box, EventType.LOAD_TEST_CREATED, lt_id)
    return int(lt_id)


async def _row(conn: AsyncConnection, load_test_id: int) -> Any:
    return (
        await conn.execute(
            sa.select(load_tests, baselines.LATEST_PASSED).where(load_tests.c.id == load_test_id)
        )
    ).one()


def _taken(project_id: int, name: str) -> Exception:
    return conflict(f"project {project_id} already has a load test named '{name}'", "name")


async def list_load_tests(
    conn: AsyncConnection, principal: Principal, project_id: int | None = None
) -> list[dict[str, Any]]:
    q = (
        sa.select(load_tests, baselines.LATEST_PASSED)
        .join(projects, projects.c.id == load_tests.c.project_id)
        .where(projects.c.organization_id.in_(list(principal.roles)))
        .where(load_tests.c.deleted_at.is_(None))
        .where(projects.c.deleted_at.is_(None))
        .order_by(load_tests.c.id)
    )
    if project_id is not None:
        await access.project(conn, principal, project_id)
        q = q.where(load_tests.c.project_id == project_id)
    return [view(r) for r in await conn.execute(q)]


async def create_load_test(
    conn: AsyncConnection, box: SecretBox, principal: Principal, project_id: int, name: str
) -> dict[str, Any]:
    name = name.strip()
    await access.project(conn, principal, project_id)
    if await find_by_name(conn, project_id, name) is not None:
        raise _taken(project_id, name)
    return view(await _row(conn, await add(conn, box, project_id, name)))


async def get_load_test(
    conn: AsyncConnection, principal: Principal, load_test_id: int
) -> dict[str, Any]:
    await access.load_test(conn, principal, load_test_id)
    return view(await _row(conn, load_test_id))


async def update_load_test(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    load_test_id: int,
    *,
    name: str | None = None,
    regression: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """Rename a load test and/or change the tolerances named in ``regression`` (``None``
    turns one check off, a name left out keeps its value). Emits one ``load_test.updated``
    whose ``extra.changes`` holds ``[old, new]`` of each changed field, a tolerance as
    ``regression.<name>``."""
    await access.load_test(conn, principal, load_test_id)
    changes: dict[str, list[Any]] = {}
    if name is not None:
        changes.update(await _rename(conn, principal, load_test_id, name))
    if regression:
        before = baselines.view(await _row(conn, load_test_id))["regression"]
        await baselines.set_tolerances(conn, load_test_id, regression)
        after = baselines.view(await _row(conn, load_test_id))["regression"]
        for key, value in after.items():
            if before[key] != value:
                changes[f"regression.{key}"] = [before[key], value]
    if changes:
        await _emit(conn, box, EventType.LOAD_TEST_UPDATED, load_test_id, {"changes": changes})
    return view(await _row(conn, load_test_id))


async def _rename(
    conn: AsyncConnection, principal: Principal, load_test_id: int, name: str
) -> dict[str, list[Any]]:
    name = name.strip()
    row = await access.load_test(conn, principal, load_test_id)
    if name != row.name:
        if await find_by_name(conn, row.project_id, name) is not None:
            raise _taken(row.project_id, name)
        await conn.execute(
            sa.update(load_tests)
            .where(load_tests.c.id == load_test_id)
            .values(name=name, updated_at=datetime.now(UTC))
        )
        return {"name": [row.name, name]}
    return {}


async def delete_load_test(
    conn: AsyncConnection, box: SecretBox, principal: Principal, load_test_id: int
) -> None:
    await access.load_test(conn, principal, load_test_id)
    await _emit(conn, box, EventType.LOAD_TEST_DELETED, load_test_id)
    await conn.execute(
        sa.update(load_tests)
        .where(load_tests.c.id == load_test_id)
        .values(deleted_at=datetime.now(UTC))
    )
