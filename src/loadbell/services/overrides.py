"""A project's override of an organization channel (seed 003, XTC), and the channel as a
project sees it with each value's source (``GET /channels/{id}/effective``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.channels.registry import get_kind
from loadbell.domain.inheritance import drop_empty
from loadbell.security.secretbox import SecretBox
from loadbell.services import access, slack_checks
from loadbell.services import channel_config as cc
from loadbell.services.access import Principal
from loadbell.services.channel_view import as_seen_by, override_of
from loadbell.services.errors import invalid
from loadbell.store.channels import ChannelRow, OverrideRow, channel_from_row
from loadbell.store.tables import channel_overrides


async def project_for(
    conn: AsyncConnection, principal: Principal, row: Any, project_id: int | None
) -> Any:
    """The project ``project_id`` (None: none), refused unless the channel reaches it."""
    if project_id is None:
        return None
    project = await access.project(conn, principal, project_id)
    if project.organization_id != row.organization_id:
        raise invalid("project_id", f"project {project_id} is not in this channel's organization")
    if row.project_id is not None and row.project_id != project_id:
        raise invalid("project_id", f"this channel belongs to project {row.project_id} only")
    return project


def effective_view(
    channel: ChannelRow, project_id: int | None, override: OverrideRow | None
) -> dict[str, Any]:
    """The channel as ``project_id`` sees it, as the edges show it (secrets masked)."""
    kind = get_kind(channel.kind)
    eff = as_seen_by(channel, override, project_id)
    return {
        "channel_id": channel.id,
        "project_id": project_id,
        "kind": channel.kind,
        "enabled": eff.enabled,
        "config": cc.masked(kind, eff.config),
        "sources": {k: v.value for k, v in sorted(eff.sources.items())},
        "override": None
        if override is None
        else {"enabled": override.enabled, "config": cc.masked(kind, override.config)},
        "events": channel.events,
        "filters": channel.filters,
    }


async def get_effective(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    project_id: int | None,
) -> dict[str, Any]:
    row = await access.channel(conn, principal, channel_id)
    await project_for(conn, principal, row, project_id)
    channel = channel_from_row(row, box)
    override = await override_of(conn, box, channel, project_id)
    return effective_view(channel, project_id, override)


async def put_override(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    project_id: int,
    *,
    enabled: bool | None,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """Replace the project's override: ``enabled`` None inherits "send messages", empty
    values are dropped (they fall back to the organization's)."""
    row = await access.channel(conn, principal, channel_id)
    principal.require_manage(row.organization_id, "change channel settings")
    if row.project_id is not None:
        raise invalid(
            "channel_id",
            "overrides apply to organization channels; this one already belongs to a "
            "project, so PATCH it directly",
        )
    await project_for(conn, principal, row, project_id)
    channel = channel_from_row(row, box)
    kind = get_kind(channel.kind)
    before = await override_of(conn, box, channel, project_id)
    own = before.config if before else {}
    values = drop_empty(cc.keep_masked(kind, own, config))
    values = slack_checks.settle_check(kind.name, config, own, values)
    # Validate what the project will actually use: the organization's values with these
    # on top. Unknown keys and bad values are refused here, not at send time.
    merged = cc.validated_config(kind, {**channel.config, **values})
    cc.checked_rendering(kind, merged, channel.events)
    values = {k: merged[k] for k in values}
    public, secret = cc.split_secrets(kind.name, values)
    stored = {
        "enabled": enabled,
        "config": public,
        "secrets": box.seal(secret),
        "updated_at": datetime.now(UTC),
    }
    if before is None:
        await conn.execute(
            sa.insert(channel_overrides).values(
                channel_id=channel_id, project_id=project_id, **stored
            )
        )
    else:
        await conn.execute(
            sa.update(channel_overrides)
            .where(channel_overrides.c.channel_id == channel_id)
            .where(channel_overrides.c.project_id == project_id)
            .values(**stored)
        )
    return effective_view(channel, project_id, OverrideRow(enabled=enabled, config=values))


async def delete_override(
    conn: AsyncConnection, principal: Principal, channel_id: int, project_id: int
) -> None:
    row = await access.channel(conn, principal, channel_id)
    principal.require_manage(row.organization_id, "change channel settings")
    await project_for(conn, principal, row, project_id)
    await conn.execute(
        sa.delete(channel_overrides)
        .where(channel_overrides.c.channel_id == channel_id)
        .where(channel_overrides.c.project_id == project_id)
    )
