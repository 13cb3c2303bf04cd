"""Run lifecycle: status changes become events and deliveries in the caller's transaction."""

from __future__ import annotations

import functools
from collections.abc import Mapping
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
from loadbell.services.fanout import record_event
from loadbell.store.context import context_of_run, run_context
from loadbell.store.outbox import Handoff
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


_ADD_STATUS_CHANGE = sa.insert(run_status_changes)


@functools.cache
def _update_run(columns: frozenset[str]) -> sa.Update:
    """``UPDATE runs SET <columns> WHERE id = :b_run_id``, built once per set of columns
    (a run update sets one of a handful of combinations)."""
    return (
        sa.update(runs)
        .where(runs.c.id == sa.bindparam("b_run_id"))
        .values({c: sa.bindparam(f"v_{c}", type_=runs.c[c].type) for c in columns})
    )


async def update_run(
    conn: AsyncConnection,
    box: SecretBox,
    run: Mapping[str, Any],
    *,
    status: RunStatus | None,
    result: RunResult | None,
    metrics: dict[str, Any] | None,
    public_url: str,
    handoff: Handoff | None = None,
) -> tuple[dict[str, Any], list[int]]:
    """Apply a PATCH to ``run``, read with :func:`context.run_with_names` under its row lock
    (two clients reporting the same status at once must not both see the old one and both
    emit the event; on SQLite ``BEGIN IMMEDIATE`` already serialises writers).

    Returns the run as it is now (same shape as ``run``) and the ids of the new deliveries
    (empty for an idempotent repeat). Raises TransitionError (409) for backward moves and
    changes after the end, and ValueError (422) for a result on a run that is not finishing.
    """
    current = RunStatus(run["status"])
    target = status if status is not None else current
    changes = check_transition(current, target)
    if current.is_terminal:
        if (result is not None and result.value != run["result"]) or metrics:
            raise TransitionError(
                f"run {run['id']} already ended ({current.text}, result {run['result']}); its "
                "result and metrics can no longer change. Send them with the finishing update."
            )
        return dict(run), []
    if result is not None and not target.is_terminal:
        raise ValueError(
            "result: a result can only be given with a finishing status (3 to 9); "
            f"the run would be at {int(target)} ({target.text})"
        )

    now = datetime.now(UTC)
    values: dict[str, Any] = {"updated_at": now}
    if metrics:
        values["metrics"] = {**(run["metrics"] or {}), **metrics}
    if changes:
        values["status"] = int(target)
        if target >= RunStatus.RUNNING and run["started_at"] is None and not target.is_terminal:
            values["started_at"] = now
        if target.is_terminal:
            values["ended_at"] = now
            values["result"] = (result or default_result(target) or RunResult.FAILED).value
    await conn.execute(
        _update_run(frozenset(values)),
        {"b_run_id": run["id"], **{f"v_{c}": v for c, v in values.items()}},
    )
    updated = {**run, **values}
    if not changes:
        return updated, []
    await conn.execute(_ADD_STATUS_CHANGE, {"run_id": run["id"], "status": int(target)})
    event_type = event_for_status(target)
    if event_type is None:
        return updated, []
    context = context_of_run(updated, public_url)
    return updated, await _record(conn, box, event_type, context, handoff)


async def emit_run_event(
    conn: AsyncConnection,
    box: SecretBox,
    run_id: int,
    event_type: EventType,
    public_url: str,
    extra: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    handoff: Handoff | None = None,
) -> list[int]:
    """Stage a run event. ``metrics`` replaces the run's stored metrics in the context: an
    intermediate report shows its live snapshot, not the final figures."""
    context = await run_context(conn, run_id, public_url)
    if metrics is not None:
        context["run"]["metrics"] = metrics
    if extra:
        context["extra"] = extra
    return await _record(conn, box, event_type, context, handoff)


async def _record(
    conn: AsyncConnection,
    box: SecretBox,
    event_type: EventType,
    context: dict[str, Any],
    handoff: Handoff | None,
) -> list[int]:
    """Stage a run event whose references come from its context (``context_of_run``)."""
    _, ids = await record_event(
        conn,
        box,
        event_type=event_type,
        organization_id=context["organization"]["id"],
        project_id=context["project"]["id"],
        load_test_id=context["load_test"]["id"],
        run_id=context["run"]["id"],
        context=context,
        handoff=handoff,
    )
    return ids
