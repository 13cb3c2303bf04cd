"""Previews: what a channel would send for an event, from realistic sample data.

Nothing is sent and nothing is stored. Secrets are masked exactly as in the attempt log.

- ``POST /channels/{id}/preview`` ``{"event": "test.finished", "project_id": 7}`` (or
  ``GET`` with the same as query parameters): a saved channel, as that project sees it
  (its override applied). Members may preview: it only reads.
- ``POST /channels/preview`` ``{"kind", "config", "event"}``: a config not saved yet, for a
  form's live preview. The config is validated as on save.

Kinds that do not speak HTTP (email, Apprise) are previewed through their optional
``preview`` method, returning the :class:`OutboundRequest` they would hand over.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Protocol, cast

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from loadbell.api import channel_config as cc
from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.channels.base import ChannelKind, targets_of
from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.security.masking import mask_headers, mask_url
from loadbell.services import access as lookups
from loadbell.services.access import Principal
from loadbell.services.channels import effective
from loadbell.services.errors import Invalid, ServiceError, invalid
from loadbell.store.channels import channel_from_row, load_overrides
from loadbell.store.tables import organizations, projects
from loadbell.values import ConfigError, Message, OutboundRequest

log = logging.getLogger(__name__)
router = APIRouter(tags=["channels"])

_EVENT_HELP = "an event type such as test.finished (any of GET /api/v1/events' types)"


class Previewer(Protocol):
    """Optional, for kinds without ``render`` (Transport kinds): what ``send`` would hand
    over, as a request-shaped value. Pure: it must not connect anywhere."""

    def preview(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest: ...


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str = Field(default="test.finished", description=_EVENT_HELP)
    project_id: int | None = None


class ConfigPreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    event: str = Field(default="test.finished", description=_EVENT_HELP)


def _event(name: str) -> EventType:
    try:
        return EventType(name)
    except ValueError:
        known = ", ".join(e.value for e in EventType)
        raise invalid("event", f"unknown event '{name}'; use one of: {known}") from None


def render_preview(
    kind: ChannelKind, config: Mapping[str, Any], message: Message
) -> dict[str, Any]:
    """Render ``message`` as ``kind`` would send it, masked for showing."""
    event = message.event_type
    if event not in kind.events(config):
        can = ", ".join(e.value for e in EventType if e in kind.events(config))
        fmt = config.get("format")
        raise Invalid(
            f"event: this {kind.name} channel"
            + (f" (format '{fmt}')" if fmt else "")
            + f" cannot express '{event.value}'; it can send: {can}",
            "event",
            code="unsupported_event",
        )
    message = dataclasses.replace(message, target=targets_of(config)[0])
    try:
        if hasattr(kind, "preview"):
            request = cast(Previewer, kind).preview(message, config)
        elif getattr(kind, "send", None) is not None:
            raise invalid("kind", f"{kind.name} channels do not go over HTTP and offer no preview")
        else:
            request = kind.render(message, config)
    except ConfigError as exc:
        raise invalid(exc.field, exc.message) from None
    except ServiceError:
        raise
    except Exception as exc:  # a kind that cannot render this sample is a 422, not a 500
        log.warning("preview of %s/%s failed", kind.name, event.value, exc_info=True)
        raise Invalid(
            f"could not render {event.value}: {exc}", "event", code="preview_failed"
        ) from None
    return {
        "event": event.value,
        "method": request.method,
        "url": mask_url(request.url) if request.mask_url else request.url,
        "headers": mask_headers(request.headers, set(request.secret_headers)),
        "body": request.body.decode("utf-8", errors="replace"),
    }


async def _preview_saved(
    state: AppState, principal: Principal, channel_id: int, event_name: str, project_id: int | None
) -> dict[str, Any]:
    event = _event(event_name)
    async with state.reader.connect() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        if project_id is not None:
            project = await lookups.project(conn, principal, project_id)
            if project.organization_id != row.organization_id:
                raise invalid(
                    "project_id", f"project {project_id} is not in this channel's organization"
                )
            if row.project_id is not None and row.project_id != project_id:
                raise invalid(
                    "project_id", f"this channel belongs to project {row.project_id} only"
                )
        pid = project_id if project_id is not None else row.project_id
        org = (
            await conn.execute(
                sa.select(organizations.c.id, organizations.c.name).where(
                    organizations.c.id == row.organization_id
                )
            )
        ).one()
        project_row = (
            (
                await conn.execute(
                    sa.select(projects.c.id, projects.c.name).where(projects.c.id == pid)
                )
            ).first()
            if pid is not None
            else None
        )
        overrides = (
            await load_overrides(conn, [(channel_id, project_id)], state.box)
            if project_id is not None and row.project_id is None
            else {}
        )
    channel = channel_from_row(row, state.box)
    kind = get_kind(channel.kind)
    config = effective(channel, overrides.get((channel_id, project_id or 0))).config
    message = samples.sample_message(
        event,
        organization={"id": org.id, "name": org.name},
        project={"id": project_row.id, "name": project_row.name} if project_row else None,
        public_url=state.settings.public_url,
    )
    return {"channel_id": channel_id, **render_preview(kind, config, message)}


@router.post("/channels/preview")
async def preview_config(
    body: ConfigPreviewIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Preview a config that is not saved (a form's live preview). Sends nothing."""
    event = _event(body.event)
    kind = cc.kind_or_422(body.kind)
    config = {**kind.defaults, **cc.validated_config(kind, body.config)}
    message = samples.sample_message(event, public_url=state.settings.public_url)
    return render_preview(kind, config, message)


@router.post("/channels/{channel_id}/preview")
async def preview_channel(
    channel_id: int,
    body: PreviewIn = Body(default_factory=PreviewIn),
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Render ``event`` for this channel with sample data. Sends nothing."""
    return await _preview_saved(state, principal, channel_id, body.event, body.project_id)


@router.get("/channels/{channel_id}/preview")
async def preview_channel_get(
    channel_id: int,
    event: str = "test.finished",
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The same as POST, with query parameters."""
    return await _preview_saved(state, principal, channel_id, event, project_id)
