"""Load tests ("test builders" in Loadmance): the API edge of ``services/load_tests.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loadbell.api.auth import current_principal
from loadbell.api.models import Id, Name, Number
from loadbell.api.responses import BODY, COMMON, LoadTestList, LoadTestOut, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.services import baselines, load_tests
from loadbell.services.access import Principal

router = APIRouter(tags=["load tests"], responses=COMMON)


class LoadTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: Id
    name: Name


def _tolerance(description: str) -> Any:
    return Field(default=None, ge=0, description=description + "; null turns the check off")


class RegressionIn(BaseModel):
    """Tolerances to change; a name left out keeps its value (docs/api.md)."""

    model_config = ConfigDict(extra="forbid")
    p95_pct: Number | None = _tolerance("how many per cent p95_ms may rise (default 20)")
    avg_pct: Number | None = _tolerance("how many per cent avg_ms may rise (default 20)")
    error_rate_pp: Number | None = _tolerance(
        "how many percentage points error_rate may rise (default 1.0)"
    )
    apdex_drop: Number | None = _tolerance("how much apdex may fall (default 0.05)")
    rps_pct: Number | None = _tolerance("how many per cent rps may fall (default 20)")

    @field_validator("*")
    @classmethod
    def _not_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("must be 0 or more (null turns the check off)")
        return v

    def given(self) -> dict[str, float | None]:
        return {
            k: (None if v is None else float(v))
            for k, v in self.model_dump(exclude_unset=True).items()
        }


class LoadTestPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    regression: RegressionIn | None = None

    @model_validator(mode="after")
    def _something(self) -> LoadTestPatch:
        if self.name is None and self.regression is None:
            raise ValueError("give name, regression, or both")
        return self


class BaselineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: Id = Field(description="a finished run of this load test")


@router.get("/load-tests", response_model=None, responses={**ok(LoadTestList), **errors(404)})
async def list_load_tests(
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return {"items": await load_tests.list_load_tests(conn, principal, project_id)}


@router.post(
    "/load-tests",
    status_code=201,
    response_model=None,
    responses={**ok(LoadTestOut, 201), **BODY, **errors(404, 409)},
)
async def create_load_test(
    body: LoadTestIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        made = await load_tests.create_load_test(
            conn, state.box, principal, body.project_id, body.name
        )
    state.wakeup.poke()
    return made


@router.get(
    "/load-tests/{load_test_id}",
    response_model=None,
    responses={**ok(LoadTestOut), **errors(404)},
)
async def get_load_test(
    load_test_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return await load_tests.get_load_test(conn, principal, load_test_id)


@router.patch(
    "/load-tests/{load_test_id}",
    response_model=None,
    responses={**ok(LoadTestOut), **BODY, **errors(404, 409)},
)
async def update_load_test(
    load_test_id: int,
    body: LoadTestPatch,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        updated = await load_tests.update_load_test(
            conn,
            state.box,
            principal,
            load_test_id,
            name=body.name,
            regression=body.regression.given() if body.regression is not None else None,
        )
    state.wakeup.poke()
    return updated


@router.put(
    "/load-tests/{load_test_id}/baseline",
    response_model=None,
    responses={**ok(LoadTestOut, 200, "The load test, its baseline pinned"), **BODY, **errors(404)},
)
async def pin_baseline(
    load_test_id: int,
    body: BaselineIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        await baselines.pin(conn, principal, load_test_id, body.run_id)
        return await load_tests.get_load_test(conn, principal, load_test_id)


@router.delete(
    "/load-tests/{load_test_id}/baseline",
    response_model=None,
    responses={
        **ok(LoadTestOut, 200, "The load test, back to its latest passed run as baseline"),
        **errors(404),
    },
)
async def unpin_baseline(
    load_test_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        await baselines.unpin(conn, principal, load_test_id)
        return await load_tests.get_load_test(conn, principal, load_test_id)


@router.delete(
    "/load-tests/{load_test_id}",
    status_code=204,
    response_model=None,
    responses={204: {"description": "Deleted"}, **errors(404)},
)
async def delete_load_test(
    load_test_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        await load_tests.delete_load_test(conn, state.box, principal, load_test_id)
    state.wakeup.poke()
    return Response(status_code=204)
