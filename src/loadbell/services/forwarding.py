"""A delivery's request rendered again, for ``loadbell forward``: method, headers (with a
fresh signature) and body, exactly as its channel would send it now.

It is rendered by the channel kind's own ``render``, the one the worker uses, from the
event's frozen context and the channel as the event's project sees it; a webhook that
signs is signed again with the channel's secrets and a new timestamp. Because the answer
carries a valid signature (and a webhook's custom headers, which are often credentials of
its receiver), only owners and admins may ask for it. Other kinds' credentials (a Slack
bot token, a HipChat token) belong to the chat service, not to the receiver the request is
forwarded to, and are masked as in the attempt log. Nothing is stored or sent.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.formats.signing import SigningError
from loadbell.security.masking import mask_headers, mask_url
from loadbell.security.secretbox import SecretBox
from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.channel_view import seen_by
from loadbell.services.errors import conflict
from loadbell.store.channels import channel_from_row
from loadbell.store.tables import channels, events
from loadbell.values import ConfigError, Message

# The kind whose headers all go to a receiver the channel's owner runs.
OWN_RECEIVER_KIND = "webhook"


async def rendered_request(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    delivery_id: int,
    *,
    public_url: str,
) -> dict[str, Any]:
    """The request of delivery ``delivery_id`` as its channel sends it now. NotFound for a
    delivery the caller cannot see; Forbidden for a member; Conflict when it cannot be
    rendered (a deleted channel, a kind that does not speak HTTP, an expired secret)."""
    found = await access.delivery(conn, principal, delivery_id)
    principal.require_manage(
        found._org, "forward deliveries (the request carries the channel's signature)"
    )
    row = (await conn.execute(sa.select(channels).where(channels.c.id == found.channel_id))).one()
    if row.deleted_at is not None:
        raise conflict(f"channel {row.id} was deleted; its deliveries cannot be rendered again")
    event = (await conn.execute(sa.select(events).where(events.c.id == found.event_id))).one()
    channel = channel_from_row(row, box)
    kind = get_kind(channel.kind)
    if getattr(kind, "send", None) is not None:
        raise conflict(
            f"{kind.name} channels do not send over HTTP; there is no request to forward"
        )
    effective, _ = await seen_by(conn, box, channel, event.project_id)
    event_type = EventType(found.event_type or event.type)
    if event_type not in kind.events(effective.config):
        raise conflict(f"the channel's format cannot express {event_type.value} any more")
    message = Message(
        delivery_id=found.uuid,
        event_id=event.id,
        event_type=event_type,
        occurred_at=event.occurred_at,
        context=event.context,
        public_url=public_url,
        target=found.target,
    )
    try:
        request = kind.render(message, effective.config)
    except ConfigError as exc:
        raise conflict(f"the channel cannot render it: {exc}", exc.field) from None
    except SigningError as exc:
        raise conflict(str(exc), "config.signing_secrets") from None
    own = kind.name == OWN_RECEIVER_KIND
    return {
        "delivery_id": found.id,
        "uuid": found.uuid,
        "event_type": event_type.value,
        "channel_id": row.id,
        "kind": kind.name,
        "status": found.status,
        "created_at": found.created_at,
        "method": request.method,
        "url": mask_url(request.url) if request.mask_url else request.url,
        "headers": dict(request.headers)
        if own
        else mask_headers(request.headers, request.secret_headers),
        "body": request.body.decode("utf-8", errors="replace"),
    }
