"""Channels, their project overrides and the test hook: the API edge of
``services/channels.py``, ``services/overrides.py`` and ``services/test_hook.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from loadbell.api.auth import current_principal
from loadbell.api.models import Id, Name
from loadbell.api.responses import (
    BODY,
    COMMON,
    ChannelList,
    ChannelOut,
    EffectiveOut,
    TestHookOut,
    errors,
    ok,
)
from loadbell.api.state import AppState, get_state
from loadbell.services import channels, overrides, slack_checks, test_hook
from loadbell.services.access import Principal

router = APIRouter(tags=["channels"], responses=COMMON)

# A slack_app channel's new targets are checked with Slack (services/slack_checks.py):
# a token Slack no longer accepts is a 409, Slack failing a 502, rate-limiting a 503.
_SLACK_CHECK = errors(409, 502)
_NO_CONTENT: dict[int | str, dict[str, Any]] = {204: {"description": "Done; no body"}}


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: Id
    project_id: Id | None = None
    kind: str
    name: Name
    enabled: bool = True
    config: dict[str, Any] = Field(default_factory=dict)
    events: list[str] | None = None
    filters: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    enabled: bool | None = Field(
        default=None,
        description="true enables the channel again; a channel disabled for failing also "
        "gets its health reset",
    )
    config: dict[str, Any] | None = None
    events: list[str] | None = None
    filters: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None  # null: inherit the organization's "send messages"
    config: dict[str, Any] = Field(default_factory=dict)


@router.get("/channels", response_model=None, responses={**ok(ChannelList), **errors(404)})
async def list_channels(
    organization_id: int | None = None,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        items = await channels.list_channels(
            conn, state.box, principal, organization_id=organization_id, project_id=project_id
        )
    return {"items": items}


@router.post(
    "/channels",
    status_code=201,
    response_model=None,
    responses={**ok(ChannelOut, 201, "The channel, secrets masked"), **BODY, **errors(403, 404)},
)
async def create_channel(
    body: ChannelIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        return await channels.create_channel(
            conn,
            state.box,
            principal,
            organization_id=body.organization_id,
            project_id=body.project_id,
            kind=body.kind,
            name=body.name,
            enabled=body.enabled,
            config=body.config,
            events=body.events,
            filters=body.filters,
            retry=body.retry,
        )


@router.get(
    "/channels/{channel_id}", response_model=None, responses={**ok(ChannelOut), **errors(404)}
)
async def get_channel(
    channel_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return await channels.get_channel(conn, state.box, principal, channel_id)


@router.patch(
    "/channels/{channel_id}",
    response_model=None,
    responses={**ok(ChannelOut), **BODY, **errors(403, 404), **_SLACK_CHECK},
)
async def update_channel(
    channel_id: int,
    body: ChannelPatch,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    await slack_checks.before_update(state.reader, state.box, principal, channel_id, body.config)
    async with state.engine.begin() as conn:
        return await channels.update_channel(
            conn,
            state.box,
            principal,
            channel_id,
            name=body.name,
            enabled=body.enabled,
            config=body.config,
            events=body.events,
            filters=body.filters,
            retry=body.retry,
        )


@router.delete(
    "/channels/{channel_id}",
    status_code=204,
    response_model=None,
    responses={**_NO_CONTENT, **errors(403, 404)},
)
async def delete_channel(
    channel_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        await channels.delete_channel(conn, principal, channel_id)
    return Response(status_code=204)


@router.get(
    "/channels/{channel_id}/effective",
    response_model=None,
    responses={**ok(EffectiveOut), **errors(404)},
)
async def effective_config(
    channel_id: int,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return await overrides.get_effective(conn, state.box, principal, channel_id, project_id)


@router.put(
    "/channels/{channel_id}/overrides/{project_id}",
    response_model=None,
    responses={
        **ok(EffectiveOut, 200, "The channel as the project now sees it"),
        **BODY,
        **errors(403, 404),
        **_SLACK_CHECK,
    },
)
async def put_override(
    channel_id: int,
    project_id: int,
    body: OverrideIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    await slack_checks.before_override(
        state.reader, state.box, principal, channel_id, project_id, body.config
    )
    async with state.engine.begin() as conn:
        return await overrides.put_override(
            conn,
            state.box,
            principal,
            channel_id,
            project_id,
            enabled=body.enabled,
            config=body.config,
        )


@router.delete(
    "/channels/{channel_id}/overrides/{project_id}",
    status_code=204,
    response_model=None,
    responses={**_NO_CONTENT, **errors(403, 404)},
)
async def delete_override(
    channel_id: int,
    project_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        await overrides.delete_override(conn, principal, channel_id, project_id)
    return Response(status_code=204)


@router.post(
    "/channels/{channel_id}/test",
    response_model=None,
    responses={**ok(TestHookOut), **errors(403, 404, 409)},
)
async def send_test(
    channel_id: int,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Send ``{"event": "test.notification_channel"}`` and wait for the first attempt."""
    handoff = state.handoff()
    async with state.engine.begin() as conn:
        staged = await test_hook.stage_test(
            conn, state.box, principal, channel_id, project_id, handoff
        )
    state.staged(staged.delivery_ids, handoff)
    return test_hook.answer(staged, await test_hook.first_attempts(state.reader, staged))
