"""Reading channels with their secrets opened and their project overrides applied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.security.secretbox import SecretBox
from loadbell.store.inline_sql import fetch_live_channels, read_live_channels, sqlite3_of
from loadbell.store.postgres_sql import asyncpg_of
from loadbell.store.tables import channel_overrides, channels


@dataclass(frozen=True)
class ChannelRow:
    id: int
    organization_id: int
    project_id: int | None
    kind: str
    name: str
    enabled: bool
    config: dict[str, Any]  # public and secret values together
    events: list[str]
    filters: dict[str, Any]
    retry: dict[str, Any]
    # Why it was disabled for failing (domain/health.py); None: it was not.
    disabled_reason: str | None = None


@dataclass(frozen=True)
class OverrideRow:
    enabled: bool | None
    config: dict[str, Any]


def channel_from_row(row: sa.Row[Any] | Mapping[str, Any], box: SecretBox) -> ChannelRow:
    m = row._mapping if isinstance(row, sa.Row) else row
    return ChannelRow(
        id=m["id"],
        organization_id=m["organization_id"],
        project_id=m["project_id"],
        kind=m["kind"],
        name=m["name"],
        enabled=bool(m["enabled"]),
        config={**(m["config"] or {}), **box.open(m["secrets"])},
        events=list(m["events"] or []),
        filters=dict(m["filters"] or {}),
        retry=dict(m["retry"] or {}),
        disabled_reason=m.get("disabled_reason"),
    )


def override_from_row(row: sa.Row[Any] | Mapping[str, Any], box: SecretBox) -> OverrideRow:
    m = row._mapping if isinstance(row, sa.Row) else row
    config = {**(m["config"] or {}), **box.open(m["secrets"])}
    return OverrideRow(enabled=m["enabled"], config=config)


_OVERRIDES = sa.select(channel_overrides).where(
    channel_overrides.c.channel_id.in_(sa.bindparam("b_ids", expanding=True))
)


async def load_overrides(
    conn: AsyncConnection, pairs: Iterable[tuple[int, int]], box: SecretBox
) -> dict[tuple[int, int], OverrideRow]:
    """Overrides for (channel_id, project_id) pairs."""
    pairs = {p for p in pairs}
    if not pairs:
        return {}
    rows = await conn.execute(_OVERRIDES, {"b_ids": sorted({c for c, _ in pairs})})
    out: dict[tuple[int, int], OverrideRow] = {}
    for r in rows:
        key = (r.channel_id, r.project_id)
        if key in pairs:
            out[key] = override_from_row(r, box)
    return out


# Live channels of an organization, built once (this runs for every event).
_LIVE = (
    sa.select(channels)
    .where(channels.c.organization_id == sa.bindparam("b_org"))
    .where(channels.c.deleted_at.is_(None))
    .order_by(channels.c.id)
)
_ORG_WIDE = _LIVE.where(channels.c.project_id.is_(None))
_ORG_WIDE_AND_PROJECT = _LIVE.where(
    sa.or_(channels.c.project_id.is_(None), channels.c.project_id == sa.bindparam("b_project"))
)


# Live channels of a project with its override of each organization channel: one statement.
# The join reads an override only for an organization channel (``channels.project_id IS
# NULL``) seen by a project: ``domain.inheritance.override_applies`` in SQL, so that this
# statement (run for every event) needs no second query. tests/services/
# test_channel_view.py holds it to that rule.
_ov = channel_overrides
_ORG_WIDE_AND_PROJECT_WITH_OVERRIDES = _ORG_WIDE_AND_PROJECT.add_columns(
    _ov.c.id.label("ov_id"),
    _ov.c.enabled.label("ov_enabled"),
    _ov.c.config.label("ov_config"),
    _ov.c.secrets.label("ov_secrets"),
).outerjoin(
    _ov,
    sa.and_(
        _ov.c.channel_id == channels.c.id,
        _ov.c.project_id == sa.bindparam("b_project"),
        channels.c.project_id.is_(None),
    ),
)


async def channels_with_overrides(
    conn: AsyncConnection, organization_id: int, project_id: int | None, box: SecretBox
) -> list[tuple[ChannelRow, OverrideRow | None]]:
    """Live channels an event of this project may reach (the organization's and its own),
    each with the project's override if it has one."""
    raw, pg = sqlite3_of(conn), asyncpg_of(conn)
    if raw is not None or pg is not None:
        live = (
            read_live_channels(raw, organization_id, project_id)
            if raw is not None
            else await fetch_live_channels(pg, organization_id, project_id)
        )
        return [
            (
                channel_from_row(channel, box),
                OverrideRow(ov["enabled"], {**ov["config"], **box.open(ov["secrets"])})
                if ov is not None
                else None,
            )
            for channel, ov in live
        ]
    if project_id is None:
        rows = await conn.execute(_ORG_WIDE, {"b_org": organization_id})
        return [(channel_from_row(r, box), None) for r in rows]
    rows = await conn.execute(
        _ORG_WIDE_AND_PROJECT_WITH_OVERRIDES, {"b_org": organization_id, "b_project": project_id}
    )
    return [
        (
            channel_from_row(r, box),
            OverrideRow(
                enabled=r.ov_enabled, config={**(r.ov_config or {}), **box.open(r.ov_secrets)}
            )
            if r.ov_id is not None
            else None,
        )
        for r in rows
    ]
