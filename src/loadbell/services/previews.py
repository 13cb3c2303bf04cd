"""Previews: what a channel would send for an event, from realistic sample data.

Nothing is sent and nothing is stored. Secrets are masked exactly as in the attempt log.
A saved channel is previewed as one project sees it (its override applied); a config not
saved yet is validated as on save. Kinds that do not speak HTTP (email, Apprise) are
previewed through their optional ``preview`` method, returning the
:class:`OutboundRequest` they would hand over.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.channels.base import ChannelKind, targets_of
from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.security.masking import mask_headers, mask_url
from loadbell.security.secretbox import SecretBox
from loadbell.services import access
from loadbell.services import channel_config as cc
from loadbell.services.access import Principal
from loadbell.services.channel_view import seen_by
from loadbell.services.errors import Invalid, ServiceError, invalid
from loadbell.services.overrides import project_for
from loadbell.store.channels import channel_from_row
from loadbell.store.tables import organizations, projects
from loadbell.values import ConfigError, Message, OutboundRequest

log = logging.getLogger(__name__)


class Previewer(Protocol):
    """Optional, for kinds without ``render`` (Transport kinds): what ``send`` would hand
    over, as a request-shaped value. Pure: it must not connect anywhere."""

    def preview(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest: ...


def event_type(name: str) -> EventType:
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


async def preview_saved(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    event_name: str,
    project_id: int | None,
    *,
    public_url: str,
) -> dict[str, Any]:
    """A saved channel's rendering of ``event_name``, as ``project_id`` sees it. Members
    may preview: it only reads."""
    event = event_type(event_name)
    row = await access.channel(conn, principal, channel_id)
    await project_for(conn, principal, row, project_id)
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
    channel = channel_from_row(row, box)
    eff, _ = await seen_by(conn, box, channel, project_id)
    message = samples.sample_message(
        event,
        organization={"id": org.id, "name": org.name},
        project={"id": project_row.id, "name": project_row.name} if project_row else None,
        public_url=public_url,
    )
    return {"channel_id": channel_id, **render_preview(get_kind(channel.kind), eff.config, message)}


def preview_config(
    kind_name: str, config: Mapping[str, Any], event_name: str, *, public_url: str
) -> dict[str, Any]:
    """A config that is not saved (a form's live preview), validated as on save."""
    event = event_type(event_name)
    kind = cc.kind_or_422(kind_name)
    clean = {**kind.defaults, **cc.validated_config(kind, config)}
    message = samples.sample_message(event, public_url=public_url)
    return render_preview(kind, clean, message)
