"""Baselines: which run a load test's runs are compared with, its tolerances, and the
comparison a finishing run stores (the figures' logic is ``domain/regression.py``).

The baseline is the run pinned with ``PUT /load-tests/{id}/baseline``, or else the load
test's latest passed run (by end time) other than the run being compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain import regression
from loadbell.domain.statuses import RunResult, RunStatus
from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.errors import invalid
from loadbell.store.tables import load_tests, runs

RUN_FIELD = "run_id"


def latest_passed(load_test_id: Any, *, other_than: Any = None) -> sa.ScalarSelect[Any]:
    """The id of the load test's latest passed run, as a scalar subquery (``load_test_id``
    may be a column, so one statement serves a list of load tests)."""
    q = sa.select(runs.c.id).where(
        runs.c.load_test_id == load_test_id, runs.c.result == RunResult.PASSED.value
    )
    if other_than is not None:
        q = q.where(runs.c.id != other_than)
    return q.order_by(runs.c.ended_at.desc(), runs.c.id.desc()).limit(1).scalar_subquery()


# The default baseline of each load test a statement reads: correlated to load_tests.
LATEST_PASSED = latest_passed(load_tests.c.id).correlate(load_tests).label("latest_passed_id")


def view(row: Any) -> dict[str, Any]:
    """What a load test shows of its baseline and tolerances, from a ``load_tests`` row
    read with :data:`LATEST_PASSED`."""
    m = row._mapping
    pinned = m["baseline_run_id"]
    return {
        "baseline": {
            "run_id": pinned if pinned is not None else m["latest_passed_id"],
            "pinned": pinned is not None,
        },
        "regression": regression.tolerances(m["regression"]),
    }


async def _load_test(conn: AsyncConnection, principal: Principal, load_test_id: int) -> Any:
    await access.load_test(conn, principal, load_test_id)
    return (
        await conn.execute(
            sa.select(load_tests, LATEST_PASSED).where(load_tests.c.id == load_test_id)
        )
    ).one()


async def read(conn: AsyncConnection, principal: Principal, load_test_id: int) -> dict[str, Any]:
    return view(await _load_test(conn, principal, load_test_id))


async def pin(conn: AsyncConnection, principal: Principal, load_test_id: int, run_id: int) -> None:
    """Pin ``run_id`` as the load test's baseline: a finished run of that load test, else
    a 422 on ``run_id`` (the same for a run the caller cannot see, so it learns nothing)."""
    await access.load_test(conn, principal, load_test_id)
    run = (
        await conn.execute(sa.select(runs.c.load_test_id, runs.c.status).where(runs.c.id == run_id))
    ).first()
    if run is None or run.load_test_id != load_test_id:
        raise invalid(
            RUN_FIELD,
            f"run {run_id} is not a run of load test {load_test_id}; pin one of its own runs "
            f"(GET /api/v1/runs?load_test_id={load_test_id})",
        )
    status = RunStatus(run.status)
    if not status.is_terminal:
        raise invalid(
            RUN_FIELD,
            f"run {run_id} has not finished (it is at {int(status)}, {status.text}); only a "
            "finished run can be the baseline",
        )
    await _set(conn, load_test_id, baseline_run_id=run_id)


async def unpin(conn: AsyncConnection, principal: Principal, load_test_id: int) -> None:
    """Back to the default baseline: the latest passed run."""
    await access.load_test(conn, principal, load_test_id)
    await _set(conn, load_test_id, baseline_run_id=None)


async def set_tolerances(
    conn: AsyncConnection, load_test_id: int, given: Mapping[str, float | None]
) -> None:
    """Replace the tolerances named in ``given`` (``None`` turns one check off); the
    others keep their value. The caller checked access and the names."""
    current = (
        await conn.execute(
            sa.select(load_tests.c.regression).where(load_tests.c.id == load_test_id)
        )
    ).scalar_one()
    merged = {**regression.tolerances(current), **given}
    await _set(conn, load_test_id, regression=merged)


async def _set(conn: AsyncConnection, load_test_id: int, **values: Any) -> None:
    await conn.execute(
        sa.update(load_tests)
        .where(load_tests.c.id == load_test_id)
        .values(**values, updated_at=datetime.now(UTC))
    )


_BASELINE_OF = sa.select(load_tests.c.baseline_run_id, load_tests.c.regression).where(
    load_tests.c.id == sa.bindparam("b_load_test_id")
)


async def comparison_for(conn: AsyncConnection, run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The comparison of a finishing run (a mapping with ``id``, ``load_test_id`` and the
    final ``metrics``) with its load test's baseline, or None when it has none."""
    lt = (await conn.execute(_BASELINE_OF, {"b_load_test_id": run["load_test_id"]})).one()
    baseline = None
    if lt.baseline_run_id is not None and lt.baseline_run_id != run["id"]:
        baseline = (
            await conn.execute(
                sa.select(runs.c.id, runs.c.metrics).where(
                    runs.c.id == lt.baseline_run_id,
                    runs.c.load_test_id == run["load_test_id"],
                )
            )
        ).first()
    if baseline is None:
        latest = latest_passed(run["load_test_id"], other_than=run["id"])
        baseline = (
            await conn.execute(sa.select(runs.c.id, runs.c.metrics).where(runs.c.id == latest))
        ).first()
    if baseline is None:
        return None
    return regression.compare(
        run["metrics"], baseline.metrics, baseline.id, regression.tolerances(lt.regression)
    )
