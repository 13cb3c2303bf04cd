"""Reading and resetting channel health (``channel_health``, written by the worker's result
writes in store/queue)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain import health
from loadbell.store.tables import (
    DELIVERY_FAILED,
    DELIVERY_SUCCEEDED,
    channel_health,
    channel_health_hours,
    channels,
    memberships,
    organizations,
    users,
)

RATE_HOURS = 24  # success_rate_24h: the current hour and the 23 before it


def _stamp(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


async def health_of(
    conn: AsyncConnection, rows: Sequence[Any], now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """The ``health`` object of each channel row (``channels`` rows), by channel id: two
    statements whatever the number of channels."""
    ids = [r.id for r in rows]
    if not ids:
        return {}
    kept: dict[int, dict[str, Any]] = {}
    for h in await conn.execute(
        sa.select(channel_health)
        .where(channel_health.c.channel_id.in_(ids))
        .order_by(channel_health.c.channel_id, channel_health.c.target)
    ):
        kept.setdefault(h.channel_id, {})[h.target] = h
    # The current hour and the 23 before it (store/queue: hour_rows).
    first_hour = int((now or datetime.now(UTC)).timestamp() // 3600) - (RATE_HOURS - 1)
    ended: dict[int, dict[str, int]] = {}
    hours = channel_health_hours
    for channel_id, succeeded, failed in await conn.execute(
        sa.select(hours.c.channel_id, sa.func.sum(hours.c.succeeded), sa.func.sum(hours.c.failed))
        .where(hours.c.channel_id.in_(ids))
        .where(hours.c.hour >= first_hour)
        .group_by(hours.c.channel_id)
    ):
        ended[channel_id] = {DELIVERY_SUCCEEDED: int(succeeded), DELIVERY_FAILED: int(failed)}
    out = {}
    for r in rows:
        own = kept.get(r.id, {})
        whole = own.get("")
        disabled = r.disabled_at is not None
        counts = ended.get(r.id, {})
        total = counts.get(DELIVERY_SUCCEEDED, 0) + counts.get(DELIVERY_FAILED, 0)
        failures = whole.consecutive_failures if whole is not None else 0
        out[r.id] = {
            "state": health.state(disabled=disabled, consecutive_failures=failures),
            "consecutive_failures": failures,
            "last_success_at": _stamp(whole.last_success_at) if whole is not None else None,
            "last_failure_at": _stamp(whole.last_failure_at) if whole is not None else None,
            "success_rate_24h": (
                round(counts.get(DELIVERY_SUCCEEDED, 0) / total, 4) if total else None
            ),
            "disabled_at": r.disabled_at,
            "disabled_reason": r.disabled_reason,
            "targets": [
                {
                    "target": target,
                    "state": health.state(
                        disabled=disabled, consecutive_failures=h.consecutive_failures
                    ),
                    "consecutive_failures": h.consecutive_failures,
                    "last_success_at": _stamp(h.last_success_at),
                    "last_failure_at": _stamp(h.last_failure_at),
                }
                for target, h in own.items()
                if target
            ],
        }
    return out


async def reset(conn: AsyncConnection, channel_id: int) -> None:
    """Forget the channel's health and that it was disabled for failing (re-enabling)."""
    await conn.execute(sa.delete(channel_health).where(channel_health.c.channel_id == channel_id))
    await conn.execute(
        sa.delete(channel_health_hours).where(channel_health_hours.c.channel_id == channel_id)
    )
    await conn.execute(
        sa.update(channels)
        .where(channels.c.id == channel_id)
        .values(disabled_at=None, disabled_reason=None, disabled_announced_at=None)
    )


async def unannounced(conn: AsyncConnection) -> list[int]:
    """Channels disabled for failing whose ``channel.disabled`` was never recorded."""
    rows = await conn.execute(
        sa.select(channels.c.id)
        .where(channels.c.disabled_at.is_not(None))
        .where(channels.c.disabled_announced_at.is_(None))
        .where(channels.c.deleted_at.is_(None))
        .order_by(channels.c.id)
    )
    return [r[0] for r in rows]


async def claim_announcement(conn: AsyncConnection, channel_id: int) -> bool:
    """Mark the channel's disabling as announced; False when it is not disabled, or was
    announced already (by another worker): then there is nothing to announce."""
    result = await conn.execute(
        sa.update(channels)
        .where(channels.c.id == channel_id)
        .where(channels.c.disabled_at.is_not(None))
        .where(channels.c.disabled_announced_at.is_(None))
        .values(disabled_announced_at=datetime.now(UTC))
    )
    return result.rowcount == 1


async def disabled_channels(conn: AsyncConnection, ids: Sequence[int]) -> list[Any]:
    """The channels among ``ids`` that are disabled for failing, with their organization's
    name and their failure count."""
    return list(
        await conn.execute(
            sa.select(
                channels.c.id,
                channels.c.organization_id,
                channels.c.project_id,
                channels.c.kind,
                channels.c.name,
                channels.c.disabled_reason,
                organizations.c.name.label("organization_name"),
                sa.func.coalesce(channel_health.c.consecutive_failures, 0).label("failures"),
            )
            .join(organizations, organizations.c.id == channels.c.organization_id)
            .outerjoin(
                channel_health,
                sa.and_(
                    channel_health.c.channel_id == channels.c.id, channel_health.c.target == ""
                ),
            )
            .where(channels.c.id.in_(list(ids)))
            .where(channels.c.disabled_at.is_not(None))
            .order_by(channels.c.id)
        )
    )


async def manager_emails(conn: AsyncConnection, organization_id: int) -> list[str]:
    """The addresses of the organization's owners and admins."""
    rows = await conn.execute(
        sa.select(users.c.email)
        .join(memberships, memberships.c.user_id == users.c.id)
        .where(memberships.c.organization_id == organization_id)
        .where(memberships.c.role.in_(["owner", "admin"]))
        .where(users.c.email.is_not(None))
        .order_by(users.c.email)
    )
    return [r[0] for r in rows]
