"""Runs: created by a client, moved through statuses; each move may notify.

Status changes become events and deliveries in the caller's transaction (the edge commits).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.events import EventType, event_for_status
from loadbell.domain.statuses import (
    RunResult,
    RunStatus,
    TransitionError,
    Trigger,
    check_transition,
    default_result,
)
from loadbell.security.secretbox import SecretBox
from loadbell.services import access, baselines, load_tests
from loadbell.services.access import Principal
from loadbell.services.errors import Invalid, conflict, invalid, not_found
from loadbell.services.fanout import record_event
from loadbell.store import idempotency
from loadbell.store.context import context_of_run, run_context, run_dict, run_with_names
from loadbell.store.db import json_dumps
from loadbell.store.inline_sql import update_run
from loadbell.store.outbox import Handoff
from loadbell.store.tables import run_status_changes, runs


async def _insert(
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


async def _apply(
    conn: AsyncConnection,
    box: SecretBox,
    run: Mapping[str, Any],
    *,
    status: RunStatus | None,
    result: RunResult | None,
    metrics: dict[str, Any] | None,
    public_url: str,
    handoff: Handoff | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[int], dict[str, Any] | None]:
    """Apply a PATCH to ``run``, read with :func:`context.run_with_names` under its row lock
    (two clients reporting the same status at once must not both see the old one and both
    emit the event; on SQLite ``BEGIN IMMEDIATE`` already serialises writers).

    Returns the run as it is now (same shape as ``run``), the ids of the new deliveries
    (empty for an idempotent repeat), and the event context's ``run_dict`` of it when an
    event was staged (``view`` reuses it). Raises TransitionError (409) for backward moves and
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
        return dict(run), [], None
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
            values["comparison"] = await baselines.comparison_for(
                conn, {**run, "metrics": values.get("metrics", run["metrics"])}
            )
    await update_run(conn, run["id"], values, status_change=bool(changes))
    updated = {**run, **values}
    if not changes:
        return updated, [], None
    event_type = event_for_status(target)
    if event_type is None:
        return updated, [], None
    context = context_of_run(updated, public_url)
    if extra:
        context["extra"] = dict(extra)
    new = await _record(conn, box, event_type, context, handoff)
    comparison = values.get("comparison")
    if comparison is not None and comparison["regressed"]:
        # After test.finished, in the same transaction: a later event id, so receivers
        # that order by it hear the result first, then the regression.
        new += await _record(conn, box, EventType.TEST_REGRESSED, context, handoff)
    return updated, new, context["run"]


async def insert_run(
    conn: AsyncConnection,
    *,
    load_test_id: int,
    project_id: int,
    organization_id: int,
    trigger: str,
    user_id: int,
) -> int:
    """A new run at Created, for a caller that checked access itself (an inbound source)."""
    return await _insert(
        conn,
        load_test_id=load_test_id,
        project_id=project_id,
        organization_id=organization_id,
        trigger=trigger,
        user_id=user_id,
    )


async def advance_run(
    conn: AsyncConnection,
    box: SecretBox,
    run_id: int,
    *,
    status: RunStatus,
    result: RunResult | None,
    public_url: str,
    handoff: Handoff | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[bool, list[int]]:
    """Move a run the caller may change (an inbound source's own run) as ``patch_run``
    does, under its row lock; ``extra`` goes into the event's context. Returns whether the
    status changed and the ids of the deliveries staged (none for a repeat). Raises
    TransitionError as ``_apply`` does."""
    run = await run_with_names(conn, run_id, lock=True)
    assert run is not None, f"run {run_id} vanished inside its transaction"
    now, new, _ = await _apply(
        conn,
        box,
        run,
        status=status,
        result=result,
        metrics=None,
        public_url=public_url,
        handoff=handoff,
        extra=extra,
    )
    return now["status"] != run["status"], new


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


def view(
    run: Mapping[str, Any], public_url: str, shown: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A run as the edges show it, from a mapping shaped like ``run_with_names``.
    ``shown``: ``run_dict`` of that run, when the caller built it already (the event's
    context of a run update holds it)."""
    out = dict(shown) if shown is not None else run_dict(run, run["user_name"], public_url)
    out.update(
        load_test_id=run["load_test_id"],
        load_test_name=run["load_test_name"],
        project_id=run["project_id"],
        organization_id=run["organization_id"],
        updated_at=run["updated_at"],
    )
    return out


async def _view(conn: AsyncConnection, run_id: int, public_url: str) -> dict[str, Any]:
    run = await run_with_names(conn, run_id)
    assert run is not None, f"run {run_id} vanished inside its transaction"
    return view(run, public_url)


@dataclass(frozen=True)
class NewRun:
    run: dict[str, Any]  # as ``view`` shows it
    new_load_test: bool  # its load_test.created event has deliveries to wake workers for
    replayed: bool = False  # an earlier request with the same idempotency key made it


# The header that carries the key, named in refusals.
KEY_FIELD = "Idempotency-Key"


async def new_run(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    *,
    load_test_id: int | None,
    project_id: int | None,
    load_test_name: str | None,
    trigger: str,
    public_url: str,
    idempotency_key: str | None = None,
) -> NewRun:
    """A run of an existing load test, or of one named in a project (created on first use).

    With ``idempotency_key``, a request that repeats an earlier one of the last 24 h (same
    key in the organization, same user, same fields) gets the earlier run, as it is now,
    and nothing is created; the same key with anything else is refused (422). See
    ``store/idempotency.py`` for two requests with one key at the same time.
    """
    new_load_test = False
    name = None
    lt_id: int | None = None
    if load_test_id is not None:
        lt = await access.load_test(conn, principal, load_test_id)
        project = await access.project(conn, principal, lt.project_id)
        lt_id = lt.id
    else:
        if project_id is None or not load_test_name:
            raise invalid(
                "body",
                "give either load_test_id, or project_id with load_test_name "
                "(the load test is created on first use)",
            )
        project = await access.project(conn, principal, project_id)
        name = load_test_name.strip()
    claimed = None
    if idempotency_key is not None:
        asked = _fingerprint(principal, load_test_id, project_id, name, trigger)
        held = await idempotency.claim(
            conn, project.organization_id, idempotency_key, asked, time.time()
        )
        if isinstance(held, idempotency.Taken):
            if held.request_hash != asked:
                raise Invalid(
                    f"{KEY_FIELD}: the key {idempotency_key!r} was used in the last 24 h for "
                    "another request (other fields, or another user); send a new key for a "
                    "new run, or the same request to get the run it made",
                    KEY_FIELD,
                    code="idempotency_key_reused",
                )
            return NewRun(await _view(conn, held.run_id, public_url), False, replayed=True)
        claimed = held
    if lt_id is None:
        assert name is not None  # checked above
        existing = await load_tests.find_by_name(conn, project.id, name)
        new_load_test = existing is None
        lt_id = existing.id if existing else await load_tests.add(conn, box, project.id, name)
    run_id = await _insert(
        conn,
        load_test_id=lt_id,
        project_id=project.id,
        organization_id=project.organization_id,
        trigger=trigger,
        user_id=principal.user_id,
    )
    if claimed is not None:
        await idempotency.attach(conn, claimed, run_id)
    return NewRun(await _view(conn, run_id, public_url), new_load_test)


def _fingerprint(
    principal: Principal,
    load_test_id: int | None,
    project_id: int | None,
    load_test_name: str | None,
    trigger: str,
) -> str:
    """What a request asked for, as one digest: a repeat must ask for the same."""
    asked = {
        "user_id": principal.user_id,
        "load_test_id": load_test_id,
        "project_id": project_id,
        "load_test_name": load_test_name,
        "trigger": trigger,
    }
    return hashlib.sha256(json_dumps(asked).encode()).hexdigest()


async def patch_run(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    run_id: int,
    *,
    status: RunStatus | None,
    result: RunResult | None,
    metrics: dict[str, Any] | None,
    public_url: str,
    handoff: Handoff | None = None,
) -> tuple[dict[str, Any], list[int]]:
    """Move a run (status, result, metrics). Returns the run as it is now and the ids of
    the deliveries staged (hand them to ``handoff`` after the commit)."""
    if status is None and result is None and metrics is None:
        raise invalid("body", "give at least one of status, result, metrics")
    access.known_id("run", run_id)
    run = await run_with_names(conn, run_id, lock=True)
    if run is None or run["organization_id"] not in principal.roles:
        raise not_found("run", run_id)
    try:
        now, new, shown = await _apply(
            conn,
            box,
            run,
            status=status,
            result=result,
            metrics=metrics,
            public_url=public_url,
            handoff=handoff,
        )
    except TransitionError as exc:
        raise conflict(str(exc), "status") from None
    except ValueError as exc:
        raise Invalid(str(exc), "result") from None
    return view(now, public_url, shown), new


async def get_run(
    conn: AsyncConnection, principal: Principal, run_id: int, public_url: str
) -> dict[str, Any]:
    """A run with its status timeline."""
    await access.run(conn, principal, run_id)
    out = await _view(conn, run_id, public_url)
    timeline = await conn.execute(
        sa.select(run_status_changes.c.status, run_status_changes.c.at)
        .where(run_status_changes.c.run_id == run_id)
        .order_by(run_status_changes.c.id)
    )
    out["timeline"] = [
        {"status": t.status, "status_text": RunStatus(t.status).text, "at": t.at} for t in timeline
    ]
    return out


async def list_runs(
    conn: AsyncConnection,
    principal: Principal,
    *,
    public_url: str,
    project_id: int | None = None,
    load_test_id: int | None = None,
    status: int | None = None,
    result: str | None = None,
    trigger: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> dict[str, Any]:
    """The newest runs first, a page at a time (``before_id``: the page after that run),
    narrowed by project, load test, status, result (``none``: no result yet) and trigger.
    A filter naming a project or load test the caller cannot see is a 404, as a direct
    read of it would be; a status, result or trigger that does not exist is an Invalid."""
    if status is not None and status not in {s.value for s in RunStatus}:
        raise invalid("status", f"use a run status code from {min(RunStatus)} to {max(RunStatus)}")
    results = [r.value for r in RunResult]
    if result is not None and result not in (*results, "none"):
        raise invalid("result", f"use one of {', '.join(results)} or none")
    if trigger is not None and trigger not in {t.value for t in Trigger}:
        raise invalid("trigger", f"use one of {', '.join(t.value for t in Trigger)}")
    size = access.page_limit(limit)
    q = (
        sa.select(runs.c.id)
        .where(runs.c.organization_id.in_(list(principal.roles)))
        .order_by(runs.c.id.desc())
        .limit(size)
    )
    if project_id is not None:
        await access.project(conn, principal, project_id)
        q = q.where(runs.c.project_id == project_id)
    if load_test_id is not None:
        await access.load_test(conn, principal, load_test_id)
        q = q.where(runs.c.load_test_id == load_test_id)
    if status is not None:
        q = q.where(runs.c.status == status)
    if result == "none":
        q = q.where(runs.c.result.is_(None))
    elif result is not None:
        q = q.where(runs.c.result == result)
    if trigger is not None:
        q = q.where(runs.c.trigger == trigger)
    if before_id is not None:
        q = q.where(runs.c.id < before_id)
    ids = [r.id for r in await conn.execute(q)]
    items = [await _view(conn, i, public_url) for i in ids]
    return {"items": items, "next_before_id": ids[-1] if len(ids) == size else None}
