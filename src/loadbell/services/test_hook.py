"""The test hook: ``{"event": "test.notification_channel"}`` sent to one channel, as one
project sees it, whatever the channel subscribes to; then the wait for its first attempt.

Staging (:func:`stage_test`) runs in the edge's transaction; the wait
(:func:`first_attempts`) after the commit, reading the attempt log that any worker
process writes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.domain.retry import RetryPolicy
from loadbell.security.secretbox import SecretBox
from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.channel_view import seen_by
from loadbell.services.errors import conflict
from loadbell.services.fanout import record_event
from loadbell.services.overrides import project_for
from loadbell.store.channels import ChannelRow, channel_from_row
from loadbell.store.outbox import Handoff
from loadbell.store.tables import delivery_attempts, organizations, projects

POLL = 0.02  # seconds between reads of the attempt log
SLACK = 5.0  # seconds the wait allows beyond the attempt's own timeout


@dataclass(frozen=True)
class StagedTest:
    event_id: int
    delivery_ids: list[int]
    wait: float  # seconds to wait for the first attempts


async def stage_test(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    project_id: int | None,
    handoff: Handoff | None,
) -> StagedTest:
    row = await access.channel(conn, principal, channel_id)
    principal.require_manage(row.organization_id, "send test hooks")
    project = await project_for(conn, principal, row, project_id)
    pid = project.id if project is not None else row.project_id
    channel = await _complete_view(conn, box, channel_from_row(row, box), pid)
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
        box,
        event_type=EventType.TEST_NOTIFICATION_CHANNEL,
        organization_id=row.organization_id,
        project_id=pid,
        context=context,
        only_channel=channel,
        handoff=handoff,
    )
    policy = RetryPolicy().with_overrides(row.retry or {})
    return StagedTest(event_id, ids, policy.timeout + SLACK)


async def _complete_view(
    conn: AsyncConnection, box: SecretBox, channel: ChannelRow, project_id: int | None
) -> ChannelRow:
    """The channel as ``project_id`` sees it (its targets, its own install), refused with
    a 409 when the kind says that configuration is incomplete (seed 003)."""
    eff, _ = await seen_by(conn, box, channel, project_id)
    missing = getattr(get_kind(channel.kind), "missing", None)
    lacks: list[str] = missing(eff.config) if missing is not None else []
    if lacks:
        scope = f" for project {project_id}" if project_id is not None else ""
        raise conflict(
            f"cannot send a test message: the configuration{scope} (own or inherited) "
            f"lacks {' and '.join(lacks)}",
            "config",
        )
    return replace(channel, config=eff.config)


def answer(staged: StagedTest, results: list[dict[str, Any]]) -> dict[str, Any]:
    """What the test hook answers: the first attempt of each delivery."""
    first = results[0] if results else {}
    return {
        "event_id": staged.event_id,
        "ok": all(r.get("outcome") == "delivered" for r in results),
        **first,
        "results": results,
    }


async def first_attempts(reader: AsyncEngine, staged: StagedTest) -> list[dict[str, Any]]:
    """Wait (polling the attempt log, which any worker process writes) for attempt 1 of
    each delivery, for at most ``staged.wait`` seconds."""
    ids = staged.delivery_ids
    deadline = time.monotonic() + staged.wait
    found: dict[int, dict[str, Any]] = {}
    while True:
        async with reader.connect() as conn:
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
        await asyncio.sleep(POLL)
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
