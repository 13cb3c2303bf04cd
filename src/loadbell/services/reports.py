"""Live reports of a run: intermediate snapshots, crossed thresholds and "report available".

Each function stages rows and the event in the caller's transaction (the edge commits).

Event contexts (see ``store/context.py`` for the common shape):

- ``test.report_intermediate``: ``run.metrics`` is the *snapshot* being reported, so every
  format shows the live figures; ``extra.report`` is ``{"id", "at", "metrics"}``. The run's
  stored metrics do not change.
- ``test.threshold_failed``: ``extra.threshold`` is
  ``{"metric", "expression", "ok": false, "value", "severity": "warning"}``.
- ``test.report_available``: ``extra.report_url`` is the run page (``run.url``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.events import EventType
from loadbell.domain.statuses import RunStatus
from loadbell.security.secretbox import SecretBox
from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.errors import conflict
from loadbell.services.runs import emit_run_event
from loadbell.store.outbox import Handoff
from loadbell.store.tables import events, run_reports, run_threshold_failures, runs


def _running(run: Any, what: str) -> None:
    status = RunStatus(run.status)
    if status.is_terminal:
        raise conflict(
            f"run {run.id} already ended ({status.text}); {what} only while it runs. "
            "Send the final figures with the finishing PATCH /runs/{id}.",
            "status",
        )


async def add_report(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    run_id: int,
    metrics: dict[str, Any],
    public_url: str,
    handoff: Handoff | None = None,
) -> tuple[dict[str, Any], list[int]]:
    """Store one snapshot of a running run and emit ``test.report_intermediate``. Returns
    (report, delivery ids)."""
    _running(await access.run(conn, principal, run_id), "intermediate reports are accepted")
    at = datetime.now(UTC)
    report_id = (
        await conn.execute(
            sa.insert(run_reports)
            .values(run_id=run_id, at=at, metrics=metrics)
            .returning(run_reports.c.id)
        )
    ).scalar_one()
    report = {"id": int(report_id), "run_id": run_id, "at": at.isoformat(), "metrics": metrics}
    extra = {"report": {"id": report["id"], "at": report["at"], "metrics": metrics}}
    ids = await emit_run_event(
        conn,
        box,
        run_id,
        EventType.TEST_REPORT_INTERMEDIATE,
        public_url,
        extra,
        metrics,
        handoff=handoff,
    )
    return report, ids


async def list_reports(
    conn: AsyncConnection,
    principal: Principal,
    run_id: int,
    *,
    after_id: int | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """A run's snapshots, oldest first, from after ``after_id``."""
    await access.run(conn, principal, run_id)
    q = (
        sa.select(run_reports)
        .where(run_reports.c.run_id == run_id)
        .order_by(run_reports.c.id)
        .limit(limit)
    )
    if after_id is not None:
        q = q.where(run_reports.c.id > after_id)
    return [
        {"id": r.id, "run_id": r.run_id, "at": r.at.isoformat(), "metrics": r.metrics}
        for r in await conn.execute(q)
    ]


async def record_threshold_failure(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    run_id: int,
    *,
    metric: str,
    expression: str,
    value: float | None,
    public_url: str,
    handoff: Handoff | None = None,
) -> list[int] | None:
    """Emit ``test.threshold_failed`` the first time (metric, expression) is reported for
    the run. Returns the delivery ids, or ``None`` for a repeat (nothing emitted).

    The unique key decides, so two reporters racing on PostgreSQL still emit once.
    """
    _running(await access.run(conn, principal, run_id), "threshold failures are reported")
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = (
        await conn.execute(
            dialect.insert(run_threshold_failures)
            .values(run_id=run_id, metric=metric, expression=expression, at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["run_id", "metric", "expression"])
            .returning(run_threshold_failures.c.id)
        )
    ).first()
    if inserted is None:
        return None
    threshold = {
        "metric": metric,
        "expression": expression,
        "ok": False,
        "value": value,
        "severity": "warning",
    }
    return await emit_run_event(
        conn,
        box,
        run_id,
        EventType.TEST_THRESHOLD_FAILED,
        public_url,
        {"threshold": threshold},
        handoff=handoff,
    )


async def report_available(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    run_id: int,
    public_url: str,
    handoff: Handoff | None = None,
) -> list[int] | None:
    """Emit ``test.report_available`` once per ended run. Returns ``None`` when it was
    already sent.

    The run row is locked first (PostgreSQL), so two callers cannot both see "not yet sent".
    """
    run = await access.run(conn, principal, run_id)
    status = RunStatus(run.status)
    if not status.is_terminal:
        raise conflict(
            f"run {run_id} is still at {int(status)} ({status.text}); the report is "
            "available once it ends: send the finishing PATCH /runs/{id} first.",
            "status",
        )
    await conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id).with_for_update())
    already = (
        await conn.execute(
            sa.select(events.c.id)
            .where(events.c.run_id == run_id)
            .where(events.c.type == EventType.TEST_REPORT_AVAILABLE.value)
            .limit(1)
        )
    ).first()
    if already is not None:
        return None
    url = f"{public_url.rstrip('/')}/runs/{run_id}"
    return await emit_run_event(
        conn,
        box,
        run_id,
        EventType.TEST_REPORT_AVAILABLE,
        public_url,
        {"report_url": url},
        handoff=handoff,
    )
