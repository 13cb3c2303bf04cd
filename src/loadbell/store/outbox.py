"""The transactional outbox: an event and its deliveries are staged in one transaction.

Callers own the transaction ("the edge commits"); these functions only stage rows.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.channels.base import targets_of
from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.domain.filters import RunFacts, matches
from loadbell.security.secretbox import SecretBox
from loadbell.store.channels import ChannelRow, channels_for_project, effective, load_overrides
from loadbell.store.tables import DELIVERY_PENDING, deliveries, events

NOTIFY_CHANNEL = "loadbell_outbox"


_INSERT_EVENT = sa.insert(events).returning(events.c.id)
_INSERT_DELIVERIES = sa.insert(deliveries).returning(deliveries.c.id)


def order_key(channel_id: int, run_id: int | None, target: str | None) -> str | None:
    if run_id is None:
        return None
    return f"{channel_id}:{run_id}:{target or ''}"


async def record_event(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    event_type: EventType,
    organization_id: int,
    context: dict[str, Any],
    project_id: int | None = None,
    load_test_id: int | None = None,
    run_id: int | None = None,
    only_channel: ChannelRow | None = None,
) -> tuple[int, list[int]]:
    """Stage an event and one delivery per subscribed channel x target.

    ``only_channel`` sends to that channel alone and skips subscription checks: it is how the
    test hook reaches a channel whatever it subscribes to.
    Returns the event id and the new delivery ids.
    """
    event_id = (
        await conn.execute(
            _INSERT_EVENT,
            {
                "type": event_type.value,
                "occurred_at": datetime.now(UTC),
                "organization_id": organization_id,
                "project_id": project_id,
                "load_test_id": load_test_id,
                "run_id": run_id,
                "context": context,
            },
        )
    ).scalar_one()

    if only_channel is not None:
        plan = [(only_channel, targets_of(only_channel.config))]
    else:
        plan = await _subscribed(conn, box, event_type, organization_id, project_id, context)

    rows = [
        {
            "uuid": str(uuid.uuid4()),
            "event_id": event_id,
            "channel_id": channel.id,
            "target": target,
            "order_key": order_key(channel.id, run_id, target),
            "status": DELIVERY_PENDING,
            "series": 1,
            "attempts": 0,
            "next_attempt_at": time.time(),
        }
        for channel, targets in plan
        for target in targets
    ]
    ids: list[int] = []
    if rows:
        result = await conn.execute(_INSERT_DELIVERIES, rows)
        ids = [r[0] for r in result]
        if conn.dialect.name == "postgresql":
            # Delivered at commit; a hint only, the worker also polls (NOTIFY is coalesced
            # to one per transaction).
            await conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")
    return event_id, ids


async def _subscribed(
    conn: AsyncConnection,
    box: SecretBox,
    event_type: EventType,
    organization_id: int,
    project_id: int | None,
    context: dict[str, Any],
) -> list[tuple[ChannelRow, list[str | None]]]:
    candidates = await channels_for_project(conn, organization_id, project_id, box)
    overrides = (
        await load_overrides(
            conn, [(c.id, project_id) for c in candidates if c.project_id is None], box
        )
        if project_id is not None
        else {}
    )
    run = context.get("run") or {}
    facts = RunFacts(trigger=run.get("trigger"), status=run.get("status"), result=run.get("result"))
    plan: list[tuple[ChannelRow, list[str | None]]] = []
    for channel in candidates:
        eff = effective(channel, overrides.get((channel.id, project_id or 0)))
        if not eff.enabled or event_type.value not in channel.events:
            continue
        if event_type not in get_kind(channel.kind).events(eff.config):
            continue
        if not matches(event_type, channel.filters, facts):
            continue
        plan.append((channel, targets_of(eff.config)))
    return plan
