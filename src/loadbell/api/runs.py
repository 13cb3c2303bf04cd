"""Runs: the API edge of ``services/runs.py``."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from loadbell.api.auth import current_principal
from loadbell.api.direct import DirectRoute
from loadbell.api.disconnects import client_present
from loadbell.api.json_answer import json_answer
from loadbell.api.models import Id, Metrics, Name
from loadbell.api.responses import BODY, COMMON, RunOut, RunPage, RunWithTimeline, errors, ok
from loadbell.api.state import AppState, get_state, state_of
from loadbell.domain.statuses import RunResult, RunStatus, Trigger
from loadbell.services import runs
from loadbell.services.access import Principal
from loadbell.services.errors import invalid
from loadbell.store.db import transaction
from loadbell.store.tables import MAX_ID


def _untraced(context: object = None) -> None:
    return None


try:  # FastAPI's own OpenTelemetry: the data of the request it is tracing, if any
    from fastapi.telemetry import get_telemetry_data
except ImportError:  # pragma: no cover - a FastAPI without it traces nothing
    get_telemetry_data = _untraced


router = APIRouter(tags=["runs"], responses=COMMON)

_STATUS_HELP = ", ".join(f"{int(s)} {s.text}" for s in RunStatus)
_STATUSES = frozenset(int(s) for s in RunStatus)  # built once, not per request


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    load_test_id: Id | None = None
    project_id: Id | None = None
    load_test_name: Name | None = None
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
    # The range is in the schema for clients; the check below keeps our own message.
    status: StrictInt | None = Field(
        default=None,
        description=f"the new status: {_STATUS_HELP} (docs/status-codes.md)",
        json_schema_extra={"minimum": min(RunStatus), "maximum": max(RunStatus)},
    )
    result: RunResult | None = None
    metrics: Metrics | None = None

    @field_validator("status")
    @classmethod
    def _known(cls, v: int | None) -> int | None:
        if v is not None and v not in _STATUSES:
            raise ValueError(f"{v} is not a run status; use one of: {_STATUS_HELP}")
        return v


# What an Idempotency-Key may be: 1 to 255 printable ASCII characters (the server has
# already trimmed surrounding spaces).
_KEY = re.compile(r"[\x20-\x7e]{1,255}")


def idempotency_key(
    value: str | None = Header(
        None,
        alias=runs.KEY_FIELD,
        description="1 to 255 printable ASCII characters, new for each run to create (a "
        "UUID): the same request sent again with it within 24 h gets the same run, 200.",
    ),
) -> str | None:
    if value is not None and not _KEY.fullmatch(value):
        raise invalid(
            runs.KEY_FIELD,
            "must be 1 to 255 printable ASCII characters (letters, digits, punctuation, "
            "spaces); send a new UUID for each run to create",
        )
    return value


@router.post(
    "/runs",
    status_code=201,
    response_model=None,
    responses={
        **ok(RunOut, 201, "The run, at Created"),
        **ok(
            RunOut,
            200,
            "A repeat of an earlier request with the same Idempotency-Key: the run it made, "
            "as it is now (header Idempotent-Replayed: true); nothing was created",
        ),
        **BODY,
        **errors(404),
    },
)
async def create_run(
    body: RunIn,
    response: Response,
    key: str | None = Depends(idempotency_key),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        made = await runs.new_run(
            conn,
            state.box,
            principal,
            load_test_id=body.load_test_id,
            project_id=body.project_id,
            load_test_name=body.load_test_name,
            trigger=body.trigger.value,
            public_url=state.settings.base_url,
            idempotency_key=key,
        )
    if made.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    if made.new_load_test:
        state.wakeup.poke()
    return made.run


async def update_run(
    run_id: int,
    body: RunPatch,
    request: Request,
    principal: Principal = Depends(current_principal),
) -> Response:
    # answer_usual (RunUpdateRoute's handler and the edge's direct route) calls this itself
    # for the usual request, with the same dependencies: a change to them is a change there.
    # The state without a dependency of its own: the hot endpoint (api/auth.py says why).
    state = state_of(request)
    handoff = state.handoff()
    # transaction(): on SQLite the connection goes back to the pool inline, not in a task
    # of its own a loop turn later (store/db.py).
    async with transaction(state.engine) as conn:
        run, new = await runs.patch_run(
            conn,
            state.box,
            principal,
            run_id,
            status=RunStatus(body.status) if body.status is not None else None,
            result=body.result,
            metrics=body.metrics.document() if body.metrics is not None else None,
            public_url=state.settings.base_url,
            handoff=handoff,
        )
    state.staged(new, handoff)
    # The hot endpoint of a load test's client: encoded here with orjson, not by FastAPI's
    # jsonable_encoder and json.dumps (the same JSON; docs/benchmarks.md, "The API path").
    return json_answer(run)


class RunUpdateRoute(APIRoute):
    """``PATCH /runs/{run_id}`` without FastAPI's solving of its parameters, for the usual
    request; FastAPI's documented hook (a route class with its own ``get_route_handler``).

    A load test's client sends this request a thousand times a second, and FastAPI's
    handler spent about 60 µs of CPU on each before the endpoint ran: the walk over the
    dependencies and parameters, a sub-walk per dependency (docs/benchmarks.md, D71). For a
    request that FastAPI reads as JSON (``Content-Type: application/json``), whose run id is
    digits and whose body ``RunPatch`` accepts, the handler here does what FastAPI's does
    with it: the router's disconnect check (app.py includes every API router with it), then
    the token's principal, then the endpoint, whose answer goes out as it is. Anything else
    (another content type, an id or a body that does not validate, dependency overrides,
    FastAPI's OpenTelemetry at work) goes to FastAPI's own handler, which answers it as it
    always has: the same validation errors, after the same checks. The parameters are
    validated before the checks, not after: validating has no effect to order.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        fastapi_handler = super().get_route_handler()

        async def handler(request: Request) -> Response:
            answer = await answer_usual(request)
            return answer if answer is not None else await fastapi_handler(request)

        return handler


async def answer_usual(request: Request) -> Response | None:
    """The usual run update answered as FastAPI's handler answers it (the router's
    disconnect check, the token's principal, the endpoint); None for a request it leaves
    to FastAPI. The route's handler calls it, and so does loadbell's edge, which gives it
    the request before the router does (api/direct.py, :func:`direct_update`)."""
    usual = await usual_update(request)
    if usual is None:
        return None
    run_id, body = usual
    await client_present(request)
    principal = await current_principal(request)
    return await update_run(run_id, body, request, principal)


async def usual_update(request: Request) -> tuple[int, RunPatch] | None:
    """The run id and body of a run update that :class:`RunUpdateRoute` handles itself,
    valued as FastAPI values them; None for a request it leaves to FastAPI."""
    if request.app.dependency_overrides or get_telemetry_data() is not None:
        return None
    # Exactly FastAPI's JSON for this header, without its parse of the header.
    if request.headers.get("content-type") != "application/json":
        return None
    run_id: str = request.path_params["run_id"]
    # ASCII digits: what int() and pydantic's lax int read alike (no sign, no spaces).
    if not (run_id.isascii() and run_id.isdigit()):
        return None
    try:
        # The JSON as FastAPI reads it (Request.json, kept for its handler), and the model
        # as it validates it.
        body = RunPatch.model_validate(await request.json())
    except Exception:  # whatever it is, FastAPI's handler meets it too and answers it
        return None
    return int(run_id), body


router.add_api_route(
    "/runs/{run_id}",
    update_run,
    methods=["PATCH"],
    response_model=None,
    responses={**ok(RunOut, 200, "The run as it is now"), **BODY, **errors(404, 409)},
    route_class_override=RunUpdateRoute,
)


def direct_update(api_prefix: str) -> DirectRoute:
    """The run update as a direct route of the edge (api/direct.py), under ``api_prefix``:
    ASCII digits for an id, as :func:`usual_update` takes them."""
    route = next(r for r in router.routes if isinstance(r, RunUpdateRoute))
    path = re.compile(re.escape(api_prefix) + r"/runs/(?P<run_id>[0-9]+)")
    return DirectRoute("PATCH", path, route, answer_usual)


@router.get(
    "/runs/{run_id}",
    response_model=None,
    responses={**ok(RunWithTimeline), **errors(404)},
)
async def get_run(
    run_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return await runs.get_run(conn, principal, run_id, state.settings.base_url)


@router.get("/runs", response_model=None, responses={**ok(RunPage), **errors(404)})
async def list_runs(
    project_id: int | None = None,
    load_test_id: int | None = None,
    status: int | None = Query(None, description="a run status code (docs/status-codes.md)"),
    result: str | None = Query(None, description="passed, failed, or none (no result yet)"),
    trigger: str | None = Query(None, description="manual or scheduled"),
    limit: int = 50,
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The newest runs first, narrowed by project, load test, status, result and trigger."""
    # A list: off the event loop's thread (store/db.py: slow_reader).
    async with state.slow_reader.connect() as conn:
        return await runs.list_runs(
            conn,
            principal,
            public_url=state.settings.base_url,
            project_id=project_id,
            load_test_id=load_test_id,
            status=status,
            result=result,
            trigger=trigger,
            limit=limit,
            before_id=before_id,
        )
