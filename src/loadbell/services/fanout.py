"""Which channels get an event, and the staging of the event with their deliveries.

The decision needs the channels' kinds (what each can express with its config, its
targets); the rows are written by ``store/outbox.py`` in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell import clock
from loadbell.channels.base import targets_of
from loadbell.channels.registry import get_kind
from loadbell.domain import health
from loadbell.domain.events import EventType
from loadbell.domain.filters import RunFacts, matches
from loadbell.security.secretbox import SecretBox
from loadbell.services.channel_view import as_seen_by
from loadbell.services.mutes import Suppression
from loadbell.services.noise import NoiseCheck
from loadbell.store.channels import ChannelRow, channels_with_overrides
from loadbell.store.outbox import Handoff, Planned, stage_event


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
    handoff: Handoff | None = None,
) -> tuple[int, list[int]]:
    """Stage an event and one delivery per subscribed channel x target.

    ``only_channel`` sends to that channel alone and skips subscription checks: it is how the
    test hook reaches a channel whatever it subscribes to (its config already as the
    project sees it). ``handoff``: see ``store/outbox.py``.
    Returns the event id and the new delivery ids.
    """
    if only_channel is not None:
        plan = [Planned(only_channel, None, targets_of(only_channel.config))]
    else:
        plan = await subscribers(conn, box, event_type, organization_id, project_id, context)
    return await stage_event(
        conn,
        event_type=event_type,
        organization_id=organization_id,
        context=context,
        plan=plan,
        project_id=project_id,
        load_test_id=load_test_id,
        run_id=run_id,
        handoff=handoff,
    )


async def subscribers(
    conn: AsyncConnection,
    box: SecretBox,
    event_type: EventType,
    organization_id: int,
    project_id: int | None,
    context: dict[str, Any],
) -> list[Planned]:
    candidates = await channels_with_overrides(conn, organization_id, project_id, box)
    run = context.get("run") or {}
    facts = RunFacts(trigger=run.get("trigger"), status=run.get("status"), result=run.get("result"))
    # The mutes in force for this event: one indexed read (services/mutes.py).
    muted = await Suppression.read(conn, organization_id, project_id, context, event_type.value)
    noise = NoiseCheck(conn, event_type, context, clock.now())
    plan: list[Planned] = []
    for channel, override in candidates:
        eff = as_seen_by(channel, override, project_id)
        # A channel disabled for failing still gets its deliveries, recorded as skipped:
        # nothing it would have sent disappears without a trace (domain/health.py).
        skip = health.REASON_DISABLED if channel.disabled_reason is not None else None
        if (not eff.enabled and skip is None) or event_type.value not in channel.events:
            continue
        if event_type not in get_kind(channel.kind).events(eff.config):
            continue
        if not matches(event_type, channel.filters, facts):
            continue
        targets = targets_of(eff.config)
        if skip is None and (mute := muted.of(channel.id)) is not None:
            plan.append(Planned(channel, override, targets, mute, muted.status))
            continue
        if skip is None:
            # Noise control (services/noise.py): notify_on, throttle, quiet hours.
            verdict = await noise.verdict(channel.id, eff.config)
            if verdict is not None:
                plan.append(
                    Planned(channel, override, targets, verdict.reason, verdict.status, verdict.due)
                )
                continue
        plan.append(Planned(channel, override, targets, skip))
    return plan
