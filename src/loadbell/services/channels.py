"""Channels: list, create, read, change, delete. Each change is validated as a whole (the
kind's settings schema, events, filters, retry) before anything is staged, so nothing is
half stored; the edge commits.

A ``slack_app`` channel's targets are checked with Slack before the edge opens its write
transaction (``services/slack_checks.py``); what is checked here needs no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.channels.registry import get_kind
from loadbell.domain.inheritance import Effective
from loadbell.domain.retry import RetryPolicy
from loadbell.domain.text import plain_name
from loadbell.security.secretbox import SecretBox
from loadbell.services import access, slack_checks
from loadbell.services import channel_config as cc
from loadbell.services.access import Principal
from loadbell.services.channel_view import as_seen_by, defaults_of
from loadbell.services.errors import invalid
from loadbell.store import health as store_health
from loadbell.store.channels import ChannelRow, channel_from_row, load_overrides
from loadbell.store.tables import channel_overrides, channels

NAME_MAX = 200  # characters


def view(row: Any, box: SecretBox) -> dict[str, Any]:
    """A channel as the edges show it: its own settings with the kind's defaults, secrets
    masked."""
    ch = channel_from_row(row, box)
    kind = get_kind(ch.kind)
    return {
        "id": ch.id,
        "organization_id": ch.organization_id,
        "project_id": ch.project_id,
        "kind": ch.kind,
        "name": ch.name,
        "enabled": ch.enabled,
        "config": cc.masked(kind, {**defaults_of(ch.kind), **ch.config}),
        "events": ch.events,
        "filters": ch.filters,
        "retry": RetryPolicy().with_overrides(ch.retry).as_dict(),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def checked_name(value: str) -> str:
    """The name to store: trimmed, one line, not blank, at most :data:`NAME_MAX`."""
    try:
        name = plain_name(value)
    except ValueError as exc:
        raise invalid("name", str(exc)) from None
    if len(name) > NAME_MAX:
        raise invalid("name", f"is longer than {NAME_MAX} characters; shorten it")
    return name


async def _row(conn: AsyncConnection, channel_id: int) -> Any:
    return (await conn.execute(sa.select(channels).where(channels.c.id == channel_id))).one()


async def views(conn: AsyncConnection, rows: list[Any], box: SecretBox) -> list[dict[str, Any]]:
    """:func:`view` of each row, with its ``health`` (store/health.py)."""
    kept = await store_health.health_of(conn, rows)
    return [{**view(r, box), "health": kept[r.id]} for r in rows]


async def _view_of(conn: AsyncConnection, channel_id: int, box: SecretBox) -> dict[str, Any]:
    [shown] = await views(conn, [await _row(conn, channel_id)], box)
    return shown


async def list_channels(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    *,
    organization_id: int | None = None,
    project_id: int | None = None,
) -> list[dict[str, Any]]:
    q = (
        sa.select(channels)
        .where(channels.c.organization_id.in_(list(principal.roles)))
        .where(channels.c.deleted_at.is_(None))
        .order_by(channels.c.id)
    )
    if organization_id is not None:
        principal.role_in(organization_id)
        q = q.where(channels.c.organization_id == organization_id)
    if project_id is not None:
        await access.project(conn, principal, project_id)
        q = q.where(channels.c.project_id == project_id)
    return await views(conn, list(await conn.execute(q)), box)


async def for_project(
    conn: AsyncConnection, box: SecretBox, principal: Principal, project_id: int
) -> list[tuple[dict[str, Any], Effective]]:
    """The live channels a project has, its own and its organization's: each as shown,
    and as the project sees it."""
    project = await access.project(conn, principal, project_id)
    rows = list(
        await conn.execute(
            sa.select(channels)
            .where(channels.c.organization_id == project.organization_id)
            .where(channels.c.deleted_at.is_(None))
            .where(sa.or_(channels.c.project_id.is_(None), channels.c.project_id == project_id))
            .order_by(channels.c.id)
        )
    )
    seen = [channel_from_row(r, box) for r in rows]
    overrides = await load_overrides(conn, [(ch.id, project_id) for ch in seen], box)
    kept = await store_health.health_of(conn, rows)
    out = []
    for row, ch in zip(rows, seen, strict=True):
        seen_by_project = as_seen_by(ch, overrides.get((ch.id, project_id)), project_id)
        out.append(({**view(row, box), "health": kept[row.id]}, seen_by_project))
    return out


async def get_channel(
    conn: AsyncConnection, box: SecretBox, principal: Principal, channel_id: int
) -> dict[str, Any]:
    [shown] = await views(conn, [await access.channel(conn, principal, channel_id)], box)
    return shown


async def opened(
    conn: AsyncConnection, box: SecretBox, principal: Principal, channel_id: int
) -> ChannelRow:
    """The channel with its secrets opened: for server-side use only, never shown."""
    return channel_from_row(await access.channel(conn, principal, channel_id), box)


async def create_channel(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    *,
    organization_id: int,
    project_id: int | None,
    kind: str,
    name: str,
    enabled: bool = True,
    config: Mapping[str, Any],
    events: list[str] | None = None,
    filters: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    principal.require_manage(organization_id)
    name = checked_name(name)
    impl = cc.kind_or_422(kind)
    slack_checks.refuse_install_data(impl.name, config, {}, replacing=False)
    clean = cc.validated_config(impl, config)
    events, filters = cc.k6cloud_selection(clean, events, filters, filters is not None)
    subscribed = cc.validated_events(impl, clean, events)
    cc.checked_rendering(impl, clean, subscribed)
    clean_filters = cc.validated_filters(filters, subscribed)
    clean_retry = cc.validated_retry(retry)
    public, secret = cc.split_secrets(impl.name, clean)
    if project_id is not None:
        project = await access.project(conn, principal, project_id)
        if project.organization_id != organization_id:
            raise invalid(
                "project_id",
                f"project {project_id} belongs to another organization; use its own "
                "organization_id",
            )
    channel_id = (
        await conn.execute(
            sa.insert(channels)
            .values(
                organization_id=organization_id,
                project_id=project_id,
                kind=impl.name,
                name=name,
                enabled=enabled,
                config=public,
                secrets=box.seal(secret),
                events=subscribed,
                filters=clean_filters,
                retry=clean_retry,
            )
            .returning(channels.c.id)
        )
    ).scalar_one()
    return await _view_of(conn, channel_id, box)


async def update_channel(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    *,
    name: str | None = None,
    enabled: bool | None = None,
    config: Mapping[str, Any] | None = None,
    events: list[str] | None = None,
    filters: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Change what is given (None: unchanged). A masked secret sent back as shown means
    "unchanged"; ``config`` keys not sent keep their values."""
    row = await access.channel(conn, principal, channel_id)
    principal.require_manage(row.organization_id)
    current = channel_from_row(row, box)
    kind = get_kind(current.kind)
    new_name = checked_name(name) if name is not None else current.name
    new_config = current.config
    if config is not None:
        new_config = cc.validated_config(
            kind, {**new_config, **cc.keep_masked(kind, current.config, config)}
        )
        new_config = slack_checks.settle_check(kind.name, config, current.config, new_config)
    events, filters = cc.k6cloud_selection(
        new_config,
        events,
        filters if filters is not None else current.filters if events is not None else None,
        filters is not None,
    )
    subscribed = cc.validated_events(
        kind, new_config, events if events is not None else current.events
    )
    if config is not None or events is not None:
        await _check_rendering(conn, box, replace(current, config=new_config), subscribed)
    new_filters = cc.validated_filters(
        filters if filters is not None else current.filters, subscribed
    )
    new_retry = cc.validated_retry(retry) if retry is not None else current.retry
    public, secret = cc.split_secrets(kind.name, new_config)
    if enabled and (not current.enabled or row.disabled_at is not None):
        # Enabling again starts afresh: the count, and the mark of a disabled channel.
        await store_health.reset(conn, channel_id)
    await conn.execute(
        sa.update(channels)
        .where(channels.c.id == channel_id)
        .values(
            name=new_name,
            enabled=enabled if enabled is not None else current.enabled,
            config=public,
            secrets=box.seal(secret),
            events=subscribed,
            filters=new_filters,
            retry=new_retry,
            updated_at=datetime.now(UTC),
        )
    )
    return await _view_of(conn, channel_id, box)


async def _check_rendering(
    conn: AsyncConnection, box: SecretBox, channel: ChannelRow, events: list[str]
) -> None:
    """The channel's config, and each project's view of it, must render every subscribed
    event (a template of the organization or of an override)."""
    kind = get_kind(channel.kind)
    if getattr(kind, "check_events", None) is None:
        return
    cc.checked_rendering(kind, channel.config, events)
    if channel.project_id is not None:
        return
    project_ids = (
        await conn.execute(
            sa.select(channel_overrides.c.project_id).where(
                channel_overrides.c.channel_id == channel.id
            )
        )
    ).scalars()
    pairs = [(channel.id, pid) for pid in project_ids]
    overrides = await load_overrides(conn, pairs, box) if pairs else {}
    for (_, pid), override in sorted(overrides.items()):
        if override.config:
            config = as_seen_by(channel, override, pid).config
            cc.checked_rendering(kind, config, events, f" (project {pid}'s override)")


async def delete_channel(conn: AsyncConnection, principal: Principal, channel_id: int) -> None:
    row = await access.channel(conn, principal, channel_id)
    principal.require_manage(row.organization_id)
    # Soft delete keeps the delivery log readable; pending deliveries fail as
    # "the channel was deleted" when the worker reaches them.
    await conn.execute(
        sa.update(channels).where(channels.c.id == channel_id).values(deleted_at=datetime.now(UTC))
    )
