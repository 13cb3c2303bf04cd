"""Runs: the list per project (or organization), and the run page that notifications'
``reportLink`` / ``watchLive`` links open (``run.url`` = LOADBELL_PUBLIC_URL/runs/{id})."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.domain import regression
from loadbell.domain.metrics import failed_thresholds, readable, run_duration
from loadbell.domain.statuses import RunResult, RunStatus, Trigger
from loadbell.formats.summary import apdex
from loadbell.services import baselines, deliveries, load_tests, mutes, reports, runs
from loadbell.services.errors import Invalid, NotFound
from loadbell.web.charts import charts
from loadbell.web.deliveries import _int, current_attempts
from loadbell.web.integrations import project_org
from loadbell.web.mutes import DURATIONS
from loadbell.web.pages import Ctx, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE = 50

# (metric key, label, how to show it), in the order of the run page's figures.
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("requests", "Requests", "int"),
    ("rps", "Requests per second", "float"),
    ("avg_ms", "Average response time", "ms"),
    ("p95_ms", "95th percentile response time", "ms"),
    ("error_rate", "Error rate", "percent"),
    ("apdex", "Apdex", "float2"),
    ("vus_max", "Most virtual users", "int"),
)


def figures(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's key figures for people, from a document read with ``readable``. The
    duration is not one of them: the page shows one, ``run_duration``'s, in its head."""
    out: list[tuple[str, str]] = []
    for key, label, how in FIGURES:
        value = metrics.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if how == "int":
            shown = f"{int(value):,}"
        elif how == "ms":
            shown = f"{value:,.1f} ms"
        elif how == "percent":
            shown = f"{value * 100:.2f} %"
        elif key == "apdex":
            shown = apdex(metrics)  # with its T, as the messages show it
        elif how == "float2":
            shown = f"{value:.2f}"
        else:
            shown = f"{value:,.1f}"
        out.append((label, shown))
    checks = metrics.get("checks")
    if isinstance(checks, dict) and checks:
        out.append(
            (
                "Checks",
                f"{int(checks.get('passes', 0)):,} passed, {int(checks.get('fails', 0)):,} failed",
            )
        )
    return out


# The compared figures' labels on the run page, in domain/regression.py's order.
COMPARED: dict[str, tuple[str, str]] = {
    "p95_ms": ("95th percentile response time", "ms"),
    "avg_ms": ("Average response time", "ms"),
    "error_rate": ("Error rate", "percent"),
    "apdex": ("Apdex", "float2"),
    "rps": ("Requests per second", "float"),
}


def _shown(value: float, how: str) -> str:
    if how == "ms":
        return f"{value:,.1f} ms"
    if how == "percent":
        return f"{value * 100:.2f} %"
    if how == "float2":
        return f"{value:.2f}"
    return f"{value:,.1f}"


def comparison_rows(comparison: Any) -> list[dict[str, Any]]:
    """The run page's comparison table: one row per figure compared with the baseline."""
    figures_ = comparison.get("figures") if isinstance(comparison, dict) else None
    if not isinstance(figures_, dict):
        return []
    rows = []
    for key in regression.FIGURES:
        entry = figures_.get(key)
        if not isinstance(entry, dict):
            continue
        label, how = COMPARED[key]
        rows.append(
            {
                "label": label,
                "value": _shown(float(entry["value"]), how),
                "baseline": _shown(float(entry["baseline"]), how),
                "change": (regression.delta(comparison, key) or "").split(" vs ")[0].lstrip("("),
                "regressed": bool(entry.get("regressed")),
            }
        )
    return rows


RUN_FILTERS = ("load_test_id", "status", "result", "trigger")


def _status(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


async def _runs_page(
    request: Request, ctx: Ctx, org_id: int, project: dict[str, Any] | None
) -> Response:
    """The runs list of an organization or a project, narrowed by the filters in the
    address (a GET form: they stay in the URL and in the pagination links)."""
    only_here = replace(ctx.who, roles={org_id: ctx.who.role_in(org_id)})
    project_id = project["id"] if project else None
    asked = {k: (request.query_params.get(k) or "").strip() for k in RUN_FILTERS}
    error = None
    listed: dict[str, Any] = {"items": [], "next_before_id": None}
    # A list: off the event loop's thread (store/db.py: slow_reader).
    async with ctx.state.slow_reader.connect() as conn:
        tests = await load_tests.list_load_tests(conn, only_here, project_id)
        try:
            listed = await runs.list_runs(
                conn,
                only_here,
                public_url=ctx.state.settings.base_url,
                project_id=project_id,
                load_test_id=_int(asked["load_test_id"]),
                status=_status(asked["status"]),
                result=asked["result"] or None,
                trigger=asked["trigger"] or None,
                limit=PAGE,
                before_id=_int(request.query_params.get("before_id")),
            )
        except (Invalid, NotFound) as exc:
            # A filter typed into the address (a load test of another organization, a
            # status that does not exist) is said above an empty list.
            error = exc.message
    kept = {k: v for k, v in asked.items() if v}
    return await ctx.render(
        "runs.html",
        org_id=org_id,
        project_id=project_id,
        section="runs",
        runs=listed["items"],
        older=listed["next_before_id"],
        project=project,
        filters=asked,
        filtered=bool(kept),
        kept_query=urlencode(kept),
        load_tests=[(t["id"], t["name"]) for t in tests],
        statuses=[(s.value, s.text) for s in RunStatus],
        results=[r.value for r in RunResult],
        triggers=[t.value for t in Trigger],
        error=error,
    )


@router.get("/orgs/{org_id}/runs")
async def org_runs(request: Request, org_id: int) -> Response:
    ctx = await Ctx.of(request)
    return await _runs_page(request, ctx, org_id, None)


@router.get("/projects/{project_id}/runs")
async def project_runs(request: Request, project_id: int) -> Response:
    ctx = await Ctx.of(request)
    org_id, name = await project_org(ctx, project_id)
    return await _runs_page(request, ctx, org_id, {"id": project_id, "name": name})


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: int) -> Response:
    ctx = await Ctx.of(request)
    # Its reports and deliveries are lists: off the event loop's thread.
    async with ctx.state.slow_reader.connect() as conn:
        run = await runs.get_run(conn, ctx.who, run_id, ctx.state.settings.base_url)
        series = await reports.list_reports(conn, ctx.who, run_id, limit=10_000)
        notified = await deliveries.list_deliveries(conn, ctx.who, run_id=run_id, limit=500)
        baseline = (await baselines.read(conn, ctx.who, run["load_test_id"]))["baseline"]
        muted = await mutes.in_force_for_run(conn, ctx.who, run_id)
        # on this connection too: two checkouts less (a round trip each on PostgreSQL)
        names = await deliveries.channel_names(conn, ctx.who, run["organization_id"])
        menu = await ctx.nav(run["organization_id"], run["project_id"], "runs", conn)
    metrics = readable(run.get("metrics"))  # the page shows what notifications show
    thresholds = metrics.get("thresholds", [])
    return await ctx.render(
        "run.html",
        org_id=run["organization_id"],
        project_id=run["project_id"],
        section="runs",
        menu=menu,
        off_loop=True,
        run=run,
        figures=figures(metrics),
        duration=run_duration(run),
        comparison=run.get("comparison"),
        compared=comparison_rows(run.get("comparison")),
        baseline=baseline,
        mutes=muted,
        durations=[(key, said) for key, (_, said) in DURATIONS.items()],
        thresholds=thresholds,
        failed=len(failed_thresholds(metrics)),
        charts=charts(series),
        reports=len(series),
        deliveries=notified["items"],
        names=names,
        can_manage=ctx.can_manage(run["organization_id"]),
        attempts_of=current_attempts,
    )


@router.post("/runs/{run_id}/baseline")
async def pin_baseline(request: Request, run_id: int) -> Response:
    """Pin this run as its load test's baseline, or (``action=unpin``) return the load
    test to its latest passed run. Anyone who may move runs may do it, as in the API."""
    ctx = await Ctx.of(request)
    form = await ctx.form()
    back = f"/runs/{run_id}#comparison"
    async with ctx.state.engine.begin() as conn:
        run = await runs.get_run(conn, ctx.who, run_id, ctx.state.settings.base_url)
        if form.get("action") == "unpin":
            await baselines.unpin(conn, ctx.who, run["load_test_id"])
            said = "The load test's baseline is its latest passed run again."
        else:
            await baselines.pin(conn, ctx.who, run["load_test_id"], run_id)
            said = f"Run #{run_id} is now the baseline of {run['load_test_name']}."
    return ctx.redirect(back, said)
