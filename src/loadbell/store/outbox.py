"""The transactional outbox: an event and its deliveries are staged in one transaction.

Callers own the transaction ("the edge commits"); these functions only stage rows.

With a :class:`Handoff` (a delivery worker in the same process, ``delivery/handoff.py``),
the new deliveries are written already leased to that worker and handed to it once the
transaction commits: no claim transaction, no wake-up. A delivery is handed off only when
no earlier delivery of its ordered sequence (channel x run x target) is still pending,
and only while the worker has room; the others are left for any worker to claim. If the
process dies before sending, the lease runs out and another worker sends it, as after a
claim.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell import clock
from loadbell.domain.events import EventType
from loadbell.store.channels import ChannelRow, OverrideRow
from loadbell.store.inline_sql import insert_event, insert_event_with_deliveries
from loadbell.store.postgres_sql import NOTIFY_CHANNEL as NOTIFY_CHANNEL  # re-exported
from loadbell.store.queue import Claimed
from loadbell.store.tables import DELIVERY_PENDING, DELIVERY_SKIPPED


@dataclass(frozen=True)
class Lease:
    owner: str
    until: float  # epoch seconds


class Handoff(Protocol):
    """Takes new deliveries from the transaction that stages them (delivery/handoff.py)."""

    def lease_for(self, channel_id: int) -> Lease | None:
        """The lease to write on a new delivery of the channel, or None to leave it to
        the claims (no room)."""

    def stage(self, claimed: Claimed, channel: ChannelRow, override: OverrideRow | None) -> None:
        """A delivery written with that lease; it may be sent once the caller commits."""


def order_key(channel_id: int, run_id: int | None, target: str | None) -> str | None:
    if run_id is None:
        return None
    return f"{channel_id}:{run_id}:{target or ''}"


class Planned(NamedTuple):
    """A channel that gets an event: one delivery per target (``[None]``: one delivery)."""

    channel: ChannelRow
    override: OverrideRow | None
    targets: list[str | None]
    skip: str | None = None  # the reason its deliveries are recorded ``status``, not sent
    status: str = DELIVERY_SKIPPED  # with a ``skip``: skipped, suppressed or held
    due: float | None = None  # held: when it becomes pending (epoch seconds)


async def stage_event(
    conn: AsyncConnection,
    *,
    event_type: EventType,
    organization_id: int,
    context: dict[str, Any],
    plan: Sequence[Planned],
    project_id: int | None = None,
    load_test_id: int | None = None,
    run_id: int | None = None,
    handoff: Handoff | None = None,
) -> tuple[int, list[int]]:
    """Stage an event and one delivery per planned channel x target.

    Which channels get the event is decided by the caller (``services/fanout.py``).
    ``handoff``: see the module docstring. Returns the event id and the new delivery ids.
    """
    # By loadbell's clock: a throttle compares these times (services/noise.py).
    occurred_at = datetime.fromtimestamp(clock.now(), UTC)
    event = {
        "type": event_type.value,
        "occurred_at": occurred_at,
        "organization_id": organization_id,
        "project_id": project_id,
        "load_test_id": load_test_id,
        "run_id": run_id,
        "context": context,
    }
    if not plan:
        return await insert_event(conn, event), []

    now = time.time()
    staged: list[tuple[ChannelRow, OverrideRow | None, dict[str, Any]]] = [
        (
            channel,
            override,
            {
                "uuid": str(uuid.uuid4()),
                "event_id": None,  # the new event's (insert_event_with_deliveries)
                "channel_id": channel.id,
                "target": target,
                "order_key": order_key(channel.id, run_id, target),
                "status": DELIVERY_PENDING if skip is None else status,
                "reason": skip,
                "series": 1,
                "attempts": 0,
                "next_attempt_at": now if due is None else due,
                "lease_until": None,
                "lease_owner": None,
                # the delivery log's copies (tables.py)
                "organization_id": organization_id,
                "event_type": event_type.value,
                "run_id": run_id,
            },
        )
        for channel, override, targets, skip, status, due in plan
        for target in targets
    ]
    if handoff is not None:
        # Offered to this process's worker while it has room; a row whose ordered sequence
        # has an earlier delivery still pending is written without it (that one goes
        # first), and the claims take it in its turn.
        for channel, _, row in staged:
            if row["status"] == DELIVERY_PENDING:
                lease = handoff.lease_for(channel.id)
                if lease is not None:
                    row["lease_until"], row["lease_owner"] = lease.until, lease.owner
    event_id, ids = await insert_event_with_deliveries(conn, event, [row for _, _, row in staged])
    for i, (channel, override, row) in enumerate(staged):
        if row["lease_owner"] is None:
            continue
        handoff.stage(  # type: ignore[union-attr]
            Claimed(
                id=ids[i],
                uuid=row["uuid"],
                channel_id=channel.id,
                target=row["target"],
                order_key=row["order_key"],
                attempts=0,
                series=1,
                event_id=event_id,
                event_type=event_type.value,
                occurred_at=occurred_at,
                project_id=project_id,
                context=context,
                lease_until=row["lease_until"],
            ),
            channel,
            override,
        )
    return event_id, ids
