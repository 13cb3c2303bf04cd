"""Mutes: the API edge of ``services/mutes.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from loadbell.api.auth import current_principal
from loadbell.api.models import Id
from loadbell.api.responses import BODY, COMMON, MuteList, MuteOut, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.domain.text import one_line
from loadbell.services import mutes
from loadbell.services.access import Principal
from loadbell.store.tables import MAX_ID

router = APIRouter(tags=["mutes"], responses=COMMON)

_TIME_HELP = "an ISO 8601 time with its zone, such as 2026-12-06T18:00:00Z"


def _iso_time(value: Any) -> datetime:
    # A string only: pydantic's own datetime would also take a number of seconds.
    if not isinstance(value, str):
        raise ValueError(f"must be {_TIME_HELP}, not {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be {_TIME_HELP}, not {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"has no zone; give {_TIME_HELP} (or +01:00 for an offset)")
    return parsed


# A time with its zone, sent as an ISO 8601 string.
IsoTime = Annotated[
    datetime,
    PlainValidator(_iso_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _reason(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("is only spaces; say why, for the people who read the list")
    return one_line(text)


# Why a mute was made: one line, not blank, trimmed; at most 500 characters.
Reason = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_reason)]


class MuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: Id
    project_id: Id | None = Field(default=None, description="mute this project only")
    load_test_id: Id | None = Field(default=None, description="mute this load test only")
    channel_id: Id | None = Field(default=None, description="mute this channel only")
    until: IsoTime = Field(
        description="when the mute ends: in the future, at most 366 days ahead, with its zone"
    )
    reason: Reason = Field(description="why, for the people who read the list (one line)")


@router.post(
    "/mutes",
    status_code=201,
    response_model=None,
    responses={**ok(MuteOut, 201, "The mute, in force from now"), **BODY, **errors(403, 404)},
)
async def create_mute(
    body: MuteIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Silence the events of a scope until ``until``: every scope it names must match an
    event (the organization always). Their deliveries are recorded ``suppressed`` with
    reason ``muted``, never sent. Owners and admins only."""
    async with state.engine.begin() as conn:
        return await mutes.create(
            conn,
            principal,
            organization_id=body.organization_id,
            project_id=body.project_id,
            load_test_id=body.load_test_id,
            channel_id=body.channel_id,
            until=body.until,
            reason=body.reason,
        )


def _id() -> Any:
    return Query(None, ge=1, le=MAX_ID)


@router.get("/mutes", response_model=None, responses={**ok(MuteList), **errors(404)})
async def list_mutes(
    organization_id: int | None = _id(),
    project_id: int | None = _id(),
    load_test_id: int | None = _id(),
    channel_id: int | None = _id(),
    active: bool = Query(
        True, description="true: the mutes in force now; false: those whose until has passed"
    ),
    limit: int = Query(100, ge=1, le=500),
    before_id: int | None = _id(),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Newest first, paged with ``before_id``. Each filter compares the mute's own value
    (``project_id=3`` lists the mutes made for project 3, not the organization's). A filter
    naming something the token cannot see is a 404."""
    async with state.reader.connect() as conn:
        return await mutes.list_mutes(
            conn,
            principal,
            organization_id=organization_id,
            project_id=project_id,
            load_test_id=load_test_id,
            channel_id=channel_id,
            active=active,
            limit=limit,
            before_id=before_id,
        )


@router.get("/mutes/{mute_id}", response_model=None, responses={**ok(MuteOut), **errors(404)})
async def get_mute(
    mute_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return await mutes.get(conn, principal, mute_id)


@router.delete(
    "/mutes/{mute_id}",
    status_code=204,
    response_model=None,
    responses={204: {"description": "Deleted: later events are sent"}, **errors(403, 404)},
)
async def delete_mute(
    mute_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    """Remove a mute, in force or ended. Owners and admins only."""
    async with state.engine.begin() as conn:
        await mutes.delete(conn, principal, mute_id)
    return Response(status_code=204)
