"""Load tests ("test builders" in Loadmance). CRUD emits load_test.* events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.domain.events import EventType
from loadbell.security.secretbox import SecretBox
from loadbell.services import access as lookups
from loadbell.services.access import Principal
from loadbell.services.errors import conflict
from loadbell.services.fanout import record_event
from loadbell.store.context import load_test_context
from loadbell.store.tables import load_tests, projects

router = APIRouter(tags=["load tests"])


class LoadTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: StrictInt
    name: str = Field(min_length=1, max_length=200)


class LoadTestPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


def out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "project_id": row.project_id,
        "name": row.name,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def emit(
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


async def create(conn: AsyncConnection, box: SecretBox, project_id: int, name: str) -> int:
    lt_id = (
        await conn.execute(
            sa.insert(load_tests)
            .values(project_id=project_id, name=name)
            .returning(load_tests.c.id)
        )
    ).scalar_one()
    await emit(conn, box, EventType.LOAD_TEST_CREATED, lt_id)
    return int(lt_id)


@router.get("/load-tests")
async def list_load_tests(
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        q = (
            sa.select(load_tests)
            .join(projects, projects.c.id == load_tests.c.project_id)
            .where(projects.c.organization_id.in_(list(principal.roles)))
            .where(load_tests.c.deleted_at.is_(None))
            .where(projects.c.deleted_at.is_(None))
            .order_by(load_tests.c.id)
        )
        if project_id is not None:
            await lookups.project(conn, principal, project_id)
            q = q.where(load_tests.c.project_id == project_id)
        return {"items": [out(r) for r in await conn.execute(q)]}


@router.post("/load-tests", status_code=201)
async def create_load_test(
    body: LoadTestIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    name = body.name.strip()
    async with state.engine.begin() as conn:
        await lookups.project(conn, principal, body.project_id)
        if await find_by_name(conn, body.project_id, name) is not None:
            raise conflict(
                f"project {body.project_id} already has a load test named '{name}'", "name"
            )
        lt_id = await create(conn, state.box, body.project_id, name)
        row = (await conn.execute(sa.select(load_tests).where(load_tests.c.id == lt_id))).one()
    state.wakeup.poke()
    return out(row)


@router.get("/load-tests/{load_test_id}")
async def get_load_test(
    load_test_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return out(await lookups.load_test(conn, principal, load_test_id))


@router.patch("/load-tests/{load_test_id}")
async def update_load_test(
    load_test_id: int,
    body: LoadTestPatch,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    name = body.name.strip()
    async with state.engine.begin() as conn:
        row = await lookups.load_test(conn, principal, load_test_id)
        if name != row.name:
            if await find_by_name(conn, row.project_id, name) is not None:
                raise conflict(
                    f"project {row.project_id} already has a load test named '{name}'", "name"
                )
            await conn.execute(
                sa.update(load_tests)
                .where(load_tests.c.id == load_test_id)
                .values(name=name, updated_at=datetime.now(UTC))
            )
            await emit(
                conn,
                state.box,
                EventType.LOAD_TEST_UPDATED,
                load_test_id,
                {"changes": {"name": [row.name, name]}},
            )
        row = (
            await conn.execute(sa.select(load_tests).where(load_tests.c.id == load_test_id))
        ).one()
    state.wakeup.poke()
    return out(row)


@router.delete("/load-tests/{load_test_id}", status_code=204)
async def delete_load_test(
    load_test_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        await lookups.load_test(conn, principal, load_test_id)
        await emit(conn, state.box, EventType.LOAD_TEST_DELETED, load_test_id)
        await conn.execute(
            sa.update(load_tests)
            .where(load_tests.c.id == load_test_id)
            .values(deleted_at=datetime.now(UTC))
        )
    state.wakeup.poke()
    return Response(status_code=204)
