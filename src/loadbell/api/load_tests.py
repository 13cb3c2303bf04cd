"""Load tests ("test builders" in Loadmance): the API edge of ``services/load_tests.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict

from loadbell.api.auth import current_principal
from loadbell.api.models import Id, Name
from loadbell.api.responses import BODY, COMMON, LoadTestList, LoadTestOut, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.services import load_tests
from loadbell.services.access import Principal

router = APIRouter(tags=["load tests"], responses=COMMON)


class LoadTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: Id
    name: Name


class LoadTestPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


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
        renamed = await load_tests.rename_load_test(
            conn, state.box, principal, load_test_id, body.name
        )
    state.wakeup.poke()
    return renamed


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
