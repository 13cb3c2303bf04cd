"""Channels (notification integrations), their project overrides and the test hook."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.api import channel_config as cc
from loadbell.api import slack_checks
from loadbell.api.auth import current_principal
from loadbell.api.state import AppState, get_state
from loadbell.channels.registry import get_kind
from loadbell.delivery.retry import RetryPolicy
from loadbell.domain.events import EventType
from loadbell.domain.inheritance import drop_empty
from loadbell.services import access as lookups
from loadbell.services.access import Principal
from loadbell.services.channels import effective, split_secrets
from loadbell.services.errors import conflict, invalid
from loadbell.services.fanout import record_event
from loadbell.store.channels import ChannelRow, OverrideRow, channel_from_row, load_overrides
from loadbell.store.tables import (
    channel_overrides,
    channels,
    delivery_attempts,
    organizations,
    projects,
)

router = APIRouter(tags=["channels"])


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: StrictInt
    project_id: StrictInt | None = None
    kind: str
    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    config: dict[str, Any] = Field(default_factory=dict)
    events: list[str] | None = None
    filters: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None
    config: dict[str, Any] | None = None
    events: list[str] | None = None
    filters: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None  # null: inherit the organization's "send messages"
    config: dict[str, Any] = Field(default_factory=dict)


def out(row: Any, state: AppState) -> dict[str, Any]:
    ch = channel_from_row(row, state.box)
    kind = get_kind(ch.kind)
    return {
        "id": ch.id,
        "organization_id": ch.organization_id,
        "project_id": ch.project_id,
        "kind": ch.kind,
        "name": ch.name,
        "enabled": ch.enabled,
        "config": cc.masked(kind, {**kind.defaults, **ch.config}),
        "events": ch.events,
        "filters": ch.filters,
        "retry": RetryPolicy().with_overrides(ch.retry).as_dict(),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def _fetch(conn: AsyncConnection, channel_id: int) -> Any:
    return (await conn.execute(sa.select(channels).where(channels.c.id == channel_id))).one()


@router.get("/channels")
async def list_channels(
    organization_id: int | None = None,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
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
            await lookups.project(conn, principal, project_id)
            q = q.where(channels.c.project_id == project_id)
        return {"items": [out(r, state) for r in await conn.execute(q)]}


@router.post("/channels", status_code=201)
async def create_channel(
    body: ChannelIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    principal.require_manage(body.organization_id)
    kind = cc.kind_or_422(body.kind)
    slack_checks.refuse_install_data(kind.name, body.config, {}, replacing=False)
    config = cc.validated_config(kind, body.config)
    events = cc.validated_events(kind, config, body.events)
    cc.checked_rendering(kind, config, events)
    filters = cc.validated_filters(body.filters, events)
    retry = cc.validated_retry(body.retry)
    public, secret = split_secrets(kind.name, config)
    async with state.engine.begin() as conn:
        if body.project_id is not None:
            project = await lookups.project(conn, principal, body.project_id)
            if project.organization_id != body.organization_id:
                raise invalid(
                    "project_id",
                    f"project {body.project_id} belongs to another "
                    "organization; use its own organization_id",
                )
        channel_id = (
            await conn.execute(
                sa.insert(channels)
                .values(
                    organization_id=body.organization_id,
                    project_id=body.project_id,
                    kind=kind.name,
                    name=body.name.strip(),
                    enabled=body.enabled,
                    config=public,
                    secrets=state.box.seal(secret),
                    events=events,
                    filters=filters,
                    retry=retry,
                )
                .returning(channels.c.id)
            )
        ).scalar_one()
        return out(await _fetch(conn, channel_id), state)


@router.get("/channels/{channel_id}")
async def get_channel(
    channel_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return out(await lookups.channel(conn, principal, channel_id), state)


@router.patch("/channels/{channel_id}")
async def update_channel(
    channel_id: int,
    body: ChannelPatch,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    await slack_checks.before_update(state, principal, channel_id, body.config)
    async with state.engine.begin() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        principal.require_manage(row.organization_id)
        current = channel_from_row(row, state.box)
        kind = get_kind(current.kind)
        config = current.config
        if body.config is not None:
            config = cc.validated_config(
                kind, {**config, **cc.keep_masked(kind, current.config, body.config)}
            )
            config = slack_checks.settle_check(kind.name, body.config, current.config, config)
        events = cc.validated_events(
            kind, config, body.events if body.events is not None else current.events
        )
        if body.config is not None or body.events is not None:
            await _check_rendering(conn, state, replace(current, config=config), events)
        filters = cc.validated_filters(
            body.filters if body.filters is not None else current.filters, events
        )
        retry = cc.validated_retry(body.retry) if body.retry is not None else current.retry
        public, secret = split_secrets(kind.name, config)
        await conn.execute(
            sa.update(channels)
            .where(channels.c.id == channel_id)
            .values(
                name=body.name.strip() if body.name else current.name,
                enabled=body.enabled if body.enabled is not None else current.enabled,
                config=public,
                secrets=state.box.seal(secret),
                events=events,
                filters=filters,
                retry=retry,
                updated_at=datetime.now(UTC),
            )
        )
        return out(await _fetch(conn, channel_id), state)


async def _check_rendering(
    conn: AsyncConnection, state: AppState, channel: ChannelRow, events: list[str]
) -> None:
    """The channel's config, and each project's override on top of it, must render every
    subscribed event (a template of the organization or of an override)."""
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
    overrides = await load_overrides(conn, pairs, state.box) if pairs else {}
    for (_, pid), override in sorted(overrides.items()):
        if override.config:
            config = effective(channel, override).config
            cc.checked_rendering(kind, config, events, f" (project {pid}'s override)")


@router.delete("/channels/{channel_id}", status_code=204)
async def delete_channel(
    channel_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        principal.require_manage(row.organization_id)
        # Soft delete keeps the delivery log readable; pending deliveries fail as
        # "the channel was deleted" when the worker reaches them.
        await conn.execute(
            sa.update(channels)
            .where(channels.c.id == channel_id)
            .values(deleted_at=datetime.now(UTC))
        )
    return Response(status_code=204)


async def _project_for(
    conn: AsyncConnection, principal: Principal, row: Any, project_id: int | None
) -> Any:
    if project_id is None:
        return None
    project = await lookups.project(conn, principal, project_id)
    if project.organization_id != row.organization_id:
        raise invalid("project_id", f"project {project_id} is not in this channel's organization")
    if row.project_id is not None and row.project_id != project_id:
        raise invalid("project_id", f"this channel belongs to project {row.project_id} only")
    return project


def _effective_out(
    state: AppState, row: Any, project_id: int | None, override: OverrideRow | None
) -> dict[str, Any]:
    ch = channel_from_row(row, state.box)
    kind = get_kind(ch.kind)
    eff = effective(ch, override)
    return {
        "channel_id": ch.id,
        "project_id": project_id,
        "kind": ch.kind,
        "enabled": eff.enabled,
        "config": cc.masked(kind, eff.config),
        "sources": {k: v.value for k, v in sorted(eff.sources.items())},
        "override": None
        if override is None
        else {"enabled": override.enabled, "config": cc.masked(kind, override.config)},
        "events": ch.events,
        "filters": ch.filters,
    }


@router.get("/channels/{channel_id}/effective")
async def effective_config(
    channel_id: int,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        await _project_for(conn, principal, row, project_id)
        overrides = (
            await load_overrides(conn, [(channel_id, project_id)], state.box)
            if project_id is not None and row.project_id is None
            else {}
        )
        return _effective_out(state, row, project_id, overrides.get((channel_id, project_id or 0)))


@router.put("/channels/{channel_id}/overrides/{project_id}")
async def put_override(
    channel_id: int,
    project_id: int,
    body: OverrideIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    await slack_checks.before_override(state, principal, channel_id, project_id, body.config)
    async with state.engine.begin() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        principal.require_manage(row.organization_id, "change channel settings")
        if row.project_id is not None:
            raise invalid(
                "channel_id",
                "overrides apply to organization channels; this one "
                "already belongs to a project, so PATCH it directly",
            )
        await _project_for(conn, principal, row, project_id)
        ch = channel_from_row(row, state.box)
        kind = get_kind(ch.kind)
        old = await load_overrides(conn, [(channel_id, project_id)], state.box)
        before = old.get((channel_id, project_id))
        own = before.config if before else {}
        values = drop_empty(cc.keep_masked(kind, own, body.config))
        values = slack_checks.settle_check(kind.name, body.config, own, values)
        # Validate what the project will actually use: the organization's values with
        # these on top. Unknown keys and bad values are refused here, not at send time.
        merged = cc.validated_config(kind, {**ch.config, **values})
        cc.checked_rendering(kind, merged, ch.events)
        values = {k: merged[k] for k in values}
        public, secret = split_secrets(kind.name, values)
        stmt_values = {
            "enabled": body.enabled,
            "config": public,
            "secrets": state.box.seal(secret),
            "updated_at": datetime.now(UTC),
        }
        if before is None:
            await conn.execute(
                sa.insert(channel_overrides).values(
                    channel_id=channel_id, project_id=project_id, **stmt_values
                )
            )
        else:
            await conn.execute(
                sa.update(channel_overrides)
                .where(channel_overrides.c.channel_id == channel_id)
                .where(channel_overrides.c.project_id == project_id)
                .values(**stmt_values)
            )
        override = OverrideRow(enabled=body.enabled, config=values)
        return _effective_out(state, row, project_id, override)


@router.delete("/channels/{channel_id}/overrides/{project_id}", status_code=204)
async def delete_override(
    channel_id: int,
    project_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        principal.require_manage(row.organization_id, "change channel settings")
        await _project_for(conn, principal, row, project_id)
        await conn.execute(
            sa.delete(channel_overrides)
            .where(channel_overrides.c.channel_id == channel_id)
            .where(channel_overrides.c.project_id == project_id)
        )
    return Response(status_code=204)


@router.post("/channels/{channel_id}/test")
async def send_test(
    channel_id: int,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Send ``{"event": "test.notification_channel"}`` and wait for the first attempt."""
    handoff = state.handoff()
    async with state.engine.begin() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        principal.require_manage(row.organization_id, "send test hooks")
        project = await _project_for(conn, principal, row, project_id)
        pid = project.id if project is not None else row.project_id
        channel = await _as_seen_by(conn, state, row, pid)
        org = (
            await conn.execute(
                sa.select(organizations).where(organizations.c.id == row.organization_id)
            )
        ).one()
        context: dict[str, Any] = {
            "organization": {"id": org.id, "name": org.name},
            "project": None,
            "load_test": None,
            "run": None,
            "extra": {},
        }
        if pid is not None:
            p = (await conn.execute(sa.select(projects).where(projects.c.id == pid))).one()
            context["project"] = {"id": p.id, "name": p.name}
        event_id, ids = await record_event(
            conn,
            state.box,
            event_type=EventType.TEST_NOTIFICATION_CHANNEL,
            organization_id=row.organization_id,
            project_id=pid,
            context=context,
            only_channel=channel,
            handoff=handoff,
        )
    state.staged(ids, handoff)
    policy = RetryPolicy().with_overrides(row.retry or {})
    results = await _first_attempts(state, ids, policy.timeout + 5.0)
    first = results[0] if results else {}
    return {
        "event_id": event_id,
        "ok": all(r.get("outcome") == "delivered" for r in results),
        **first,
        "results": results,
    }


async def _as_seen_by(
    conn: AsyncConnection, state: AppState, row: Any, project_id: int | None
) -> ChannelRow:
    """The channel as ``project_id`` sees it (its targets, its own install), refused with
    a 409 when the kind says the effective configuration is incomplete (seed 003)."""
    ch = channel_from_row(row, state.box)
    override = None
    if project_id is not None and row.project_id is None:
        found = await load_overrides(conn, [(ch.id, project_id)], state.box)
        override = found.get((ch.id, project_id))
    config = effective(ch, override).config
    missing = getattr(get_kind(ch.kind), "missing", None)
    lacks: list[str] = missing(config) if missing is not None else []
    if lacks:
        scope = f" for project {project_id}" if project_id is not None else ""
        raise conflict(
            f"cannot send a test message: the configuration{scope} (own or inherited) "
            f"lacks {' and '.join(lacks)}",
            "config",
        )
    return replace(ch, config=config)


async def _first_attempts(state: AppState, ids: list[int], wait: float) -> list[dict[str, Any]]:
    """Wait (polling the attempt log, which any worker process writes) for attempt 1."""
    deadline = time.monotonic() + wait
    found: dict[int, dict[str, Any]] = {}
    while True:
        async with state.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(delivery_attempts)
                .where(delivery_attempts.c.delivery_id.in_([i for i in ids if i not in found]))
                .where(delivery_attempts.c.number == 1)
            )
            for r in rows:
                found[r.delivery_id] = {
                    "delivery_id": r.delivery_id,
                    "outcome": r.outcome,
                    "response_status": r.response_status,
                    "response_body": r.response_body,
                    "duration_ms": r.duration_ms,
                    "error": r.error,
                }
        if len(found) == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    return [
        found.get(
            i,
            {
                "delivery_id": i,
                "outcome": "pending",
                "error": "no worker made an attempt in time; is `loadbell worker` "
                "running (or `loadbell serve` without --no-worker)?",
            },
        )
        for i in ids
    ]
