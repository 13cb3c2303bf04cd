"""Runs: created by a client, moved through statuses; each move may notify."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.api import load_tests as load_test_api
from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.domain.statuses import RunResult, RunStatus, TransitionError, Trigger
from loadbell.services import access as lookups
from loadbell.services import runs as run_store
from loadbell.services.access import Principal
from loadbell.services.errors import Invalid, conflict, invalid, not_found
from loadbell.store.context import run_dict, run_with_names
from loadbell.store.tables import run_status_changes, runs

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


def _run_out(run: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """A run as the API shows it, from a mapping shaped like ``run_with_names``."""
    out = run_dict(run, run["user_name"], public_url)
    out.update(
        load_test_id=run["load_test_id"],
        load_test_name=run["load_test_name"],
        project_id=run["project_id"],
        organization_id=run["organization_id"],
        updated_at=run["updated_at"],
    )
    return out


async def _out(conn: AsyncConnection, run_id: int, public_url: str) -> dict[str, Any]:
    run = await run_with_names(conn, run_id)
    assert run is not None, f"run {run_id} vanished inside its transaction"
    return _run_out(run, public_url)


@router.post("/runs", status_code=201)
async def create_run(
    body: RunIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    new_load_test = False  # its load_test.created event has deliveries to wake workers for
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
            new_load_test = existing is None
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
    if new_load_test:
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
    handoff = state.handoff()
    async with state.engine.begin() as conn:
        run = await run_with_names(conn, run_id, lock=True)
        if run is None or run["organization_id"] not in principal.roles:
            raise not_found("run", run_id)
        try:
            now, new = await run_store.update_run(
                conn,
                state.box,
                run,
                status=RunStatus(body.status) if body.status is not None else None,
                result=body.result,
                metrics=body.metrics,
                public_url=state.settings.public_url,
                handoff=handoff,
            )
        except TransitionError as exc:
            raise conflict(str(exc), "status") from None
        except ValueError as exc:
            raise Invalid(str(exc), "result") from None
    state.staged(new, handoff)
    return _run_out(now, state.settings.public_url)


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
