"""Previews: the API edge of ``services/previews.py``. Nothing is sent and nothing is
stored.

- ``POST /channels/{id}/preview`` ``{"event": "test.finished", "project_id": 7}`` (or
  ``GET`` with the same as query parameters): a saved channel, as that project sees it
  (its override applied). Members may preview: it only reads.
- ``POST /channels/preview`` ``{"kind", "config", "event"}``: a config not saved yet, for a
  form's live preview. The config is validated as on save.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from loadbell.api.auth import current_principal
from loadbell.api.models import Id
from loadbell.api.responses import BODY, COMMON, ChannelPreviewOut, PreviewOut, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.services import previews
from loadbell.services.access import Principal

router = APIRouter(tags=["channels"], responses=COMMON)

_EVENT_HELP = "an event type such as test.finished (any of GET /api/v1/events' types)"


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str = Field(default="test.finished", description=_EVENT_HELP)
    project_id: Id | None = None


class ConfigPreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    event: str = Field(default="test.finished", description=_EVENT_HELP)


@router.post("/channels/preview", response_model=None, responses={**ok(PreviewOut), **BODY})
async def preview_config(
    body: ConfigPreviewIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Preview a config that is not saved (a form's live preview). Sends nothing."""
    return previews.preview_config(
        body.kind, body.config, body.event, public_url=state.settings.base_url
    )


@router.post(
    "/channels/{channel_id}/preview",
    response_model=None,
    responses={**ok(ChannelPreviewOut), **BODY, **errors(404)},
)
async def preview_channel(
    channel_id: int,
    body: PreviewIn = Body(default_factory=PreviewIn),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Render ``event`` for this channel with sample data. Sends nothing."""
    async with state.reader.connect() as conn:
        return await previews.preview_saved(
            conn,
            state.box,
            principal,
            channel_id,
            body.event,
            body.project_id,
            public_url=state.settings.base_url,
        )


@router.get(
    "/channels/{channel_id}/preview",
    response_model=None,
    responses={**ok(ChannelPreviewOut), **errors(404)},
)
async def preview_channel_get(
    channel_id: int,
    event: str = "test.finished",
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The same as POST, with query parameters."""
    async with state.reader.connect() as conn:
        return await previews.preview_saved(
            conn,
            state.box,
            principal,
            channel_id,
            event,
            project_id,
            public_url=state.settings.base_url,
        )
