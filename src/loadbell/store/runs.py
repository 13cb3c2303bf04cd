"""Run lifecycle: status changes become events and deliveries in the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.events import EventType, event_for_status
from loadbell.domain.statuses import (
    RunResult,
    RunStatus,
    TransitionError,
    check_transition,
    default_result,
)
from loadbell.security.secretbox import SecretBox
from loadbell.store.context import run_context
from loadbell.store.outbox import record_event
from loadbell.store.tables import run_status_changes, runs


async def create_run(
    conn: AsyncConnection,
    *,
    load_test_id: int,
    project_id: int,
    organization_id: int,
    trigger: str,
    user_id: int,
) -> int:
    run_id = (
        await conn.execute(
            sa.insert(runs)
            .values(
                load_test_id=load_test_id,
                project_id=project_id,
                organization_id=organization_id,
                status=int(RunStatus.CREATED),
                trigger=trigger,
                user_id=user_id,
                metrics={},
            )
            .returning(runs.c.id)
        )
    ).scalar_one()
    await conn.execute(
        sa.insert(run_status_changes).values(run_id=run_id, status=int(RunStatus.CREATED))
    )
    return int(run_id)


async def update_run(
    conn: AsyncConnection,
    box: SecretBox,
    run: sa.Row[Any],
    *,
    status: RunStatus | None,
    result: RunResult | None,
    metrics: dict[str, Any] | None,
    public_url: str,
) -> list[int]:
    """Apply a PATCH. Returns the ids of the new deliveries (empty for an idempotent repeat).

    Raises TransitionError (409) for backward moves and changes after the end, and
    ValueError (422) for a result on a run that is not finishing.
    """
    # Re-read the run under a row lock: two clients reporting the same status at once must
    # not both see the old one and both emit the event (PostgreSQL runs READ COMMITTED; on
    # SQLite BEGIN IMMEDIATE already serialises writers and FOR UPDATE is not rendered).
    run = (await conn.execute(sa.select(runs).where(runs.c.id == run.id).with_for_update())).one()
    current = RunStatus(run.status)
    target = status if status is not None else current
    changes = check_transition(current, target)
    if current.is_terminal:
        if (result is not None and result.value != run.result) or metrics:
            raise TransitionError(
                f"run {run.id} already ended ({current.text}, result {run.result}); its "
                "result and metrics can no longer change. Send them with the finishing update."
            )
        return []
    if result is not None and not target.is_terminal:
        raise ValueError(
            "result: a result can only be given with a finishing status (3 to 9); "
            f"the run would be at {int(target)} ({target.text})"
        )

    now = datetime.now(UTC)
    values: dict[str, Any] = {"updated_at": now}
    if metrics:
        values["metrics"] = {**(run.metrics or {}), **metrics}
    if changes:
        values["status"] = int(target)
        if target >= RunStatus.RUNNING and run.started_at is None and not target.is_terminal:
            values["started_at"] = now
        if target.is_terminal:
            values["ended_at"] = now
            values["result"] = (result or default_result(target) or RunResult.FAILED).value
    await conn.execute(sa.update(runs).where(runs.c.id == run.id).values(**values))
    if not changes:
        return []
    await conn.execute(sa.insert(run_status_changes).values(run_id=run.id, status=int(target)))
    event_type = event_for_status(target)
    if event_type is None:
        return []
    return await emit_run_event(conn, box, run.id, event_type, public_url)


async def emit_run_event(
    conn: AsyncConnection,
    box: SecretBox,
    run_id: int,
    event_type: EventType,
    public_url: str,
    extra: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> list[int]:
    """Stage a run event. ``metrics`` replaces the run's stored metrics in the context: an
    intermediate report shows its live snapshot, not the final figures."""
    context = await run_context(conn, run_id, public_url)
    if metrics is not None:
        context["run"]["metrics"] = metrics
    if extra:
        context["extra"] = extra
    _, ids = await record_event(
        conn,
        box,
        event_type=event_type,
        organization_id=context["organization"]["id"],
        project_id=context["project"]["id"],
        load_test_id=context["load_test"]["id"],
        run_id=run_id,
        context=context,
    )
    return ids
