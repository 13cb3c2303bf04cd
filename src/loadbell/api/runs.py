"""Runs: created by a client, moved through statuses; each move may notify."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from loadbell.api import load_tests as load_test_api
from loadbell.api import lookups
from loadbell.api.auth import Principal, current_principal
from loadbell.api.errors import ApiError, conflict, invalid
from loadbell.api.state import AppState, get_state
from loadbell.domain.statuses import RunResult, RunStatus, TransitionError, Trigger
from loadbell.store import runs as run_store
from loadbell.store.context import run_dict
from loadbell.store.tables import load_tests, run_status_changes, runs, users

router = APIRouter(tags=["runs"])

_STATUS_HELP = ", ".join(f"{int(s)} {s.text}" for s in RunStatus)


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    load_test_id: StrictInt | None = None
    project_id: StrictInt | None = None
    load_test_name: str | None = Field(default=None, min_length=1, max_length=200)
    trigger: Trigger = Trigger.MANUAL

    @model_validator(mode="after")
    def _one_way(self) -> RunIn:
        if self.load_test_id is None and (self.project_id is None or not self.load_test_name):
            raise ValueError(
                "give either load_test_id, or project_id with load_test_name "
                "(the load test is created on first use)"
            )
        return self


class RunPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: StrictInt | None = None
    result: RunResult | None = None
    metrics: dict[str, Any] | None = None

    @field_validator("status")
    @classmethod
    def _known(cls, v: int | None) -> int | None:
        if v is not None and v not in {int(s) for s in RunStatus}:
            raise ValueError(f"{v} is not a run status; use one of: {_STATUS_HELP}")
        return v


async def _out(conn: Any, run_id: int, public_url: str) -> dict[str, Any]:
    row = (
        await conn.execute(
            sa.select(runs, users.c.name.label("user_name"), load_tests.c.name.label("lt_name"))
            .join(users, users.c.id == runs.c.user_id)
            .join(load_tests, load_tests.c.id == runs.c.load_test_id)
            .where(runs.c.id == run_id)
        )
    ).one()
    out = run_dict(row, row.user_name, public_url)
    out.update(
        load_test_id=row.load_test_id,
        load_test_name=row.lt_name,
        project_id=row.project_id,
        organization_id=row.organization_id,
        updated_at=row.updated_at,
    )
    return out


@router.post("/runs", status_code=201)
async def create_run(
    body: RunIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        if body.load_test_id is not None:
            lt = await lookups.load_test(conn, principal, body.load_test_id)
            project = await lookups.project(conn, principal, lt.project_id)
            lt_id = lt.id
        else:
            assert body.project_id is not None and body.load_test_name is not None
            project = await lookups.project(conn, principal, body.project_id)
            name = body.load_test_name.strip()
            existing = await load_test_api.find_by_name(conn, project.id, name)
            lt_id = (
                existing.id
                if existing
                else await load_test_api.create(conn, state.box, project.id, name)
            )
        run_id = await run_store.create_run(
            conn,
            load_test_id=lt_id,
            project_id=project.id,
            organization_id=project.organization_id,
            trigger=body.trigger.value,
            user_id=principal.user_id,
        )
        result = await _out(conn, run_id, state.settings.public_url)
    state.wakeup.poke()
    return result


@router.patch("/runs/{run_id}")
async def update_run(
    run_id: int,
    body: RunPatch,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    if body.status is None and body.result is None and body.metrics is None:
        raise invalid("body", "give at least one of status, result, metrics")
    async with state.engine.begin() as conn:
        run = await lookups.run(conn, principal, run_id)
        try:
            new = await run_store.update_run(
                conn,
                state.box,
                run,
                status=RunStatus(body.status) if body.status is not None else None,
                result=body.result,
                metrics=body.metrics,
                public_url=state.settings.public_url,
            )
        except TransitionError as exc:
            raise conflict(str(exc), "status") from None
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc), "result") from None
        result = await _out(conn, run_id, state.settings.public_url)
    if new:
        state.wakeup.poke()
    return result


@router.get("/runs/{run_id}")
async def get_run(
    run_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        await lookups.run(conn, principal, run_id)
        out = await _out(conn, run_id, state.settings.public_url)
        timeline = await conn.execute(
            sa.select(run_status_changes.c.status, run_status_changes.c.at)
            .where(run_status_changes.c.run_id == run_id)
            .order_by(run_status_changes.c.id)
        )
        out["timeline"] = [
            {"status": t.status, "status_text": RunStatus(t.status).text, "at": t.at}
            for t in timeline
        ]
        return out


@router.get("/runs")
async def list_runs(
    project_id: int | None = None,
    load_test_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        q = (
            sa.select(runs.c.id)
            .where(runs.c.organization_id.in_(list(principal.roles)))
            .order_by(runs.c.id.desc())
            .limit(lookups.page_limit(limit))
        )
        if project_id is not None:
            await lookups.project(conn, principal, project_id)
            q = q.where(runs.c.project_id == project_id)
        if load_test_id is not None:
            q = q.where(runs.c.load_test_id == load_test_id)
        if before_id is not None:
            q = q.where(runs.c.id < before_id)
        ids = [r.id for r in await conn.execute(q)]
        items = [await _out(conn, i, state.settings.public_url) for i in ids]
        return {
            "items": items,
            "next_before_id": ids[-1] if len(ids) == lookups.page_limit(limit) else None,
        }
