"""The delivery log: filter by channel, run, status and event; each delivery with its
attempts (request headers masked, response, timing, error); "Redeliver" one, or every
delivery that failed since a given time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.domain.events import EventType
from loadbell.services import deliveries
from loadbell.services.errors import Invalid, NotFound
from loadbell.web.pages import Ctx, PageRoute
from loadbell.web.signin import safe_next

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE = 50
# "Redeliver all failed since" proposes this long ago: "now" would match nothing.
BULK_SINCE = timedelta(hours=24)


def _int(value: str | None) -> int | None:
    value = (value or "").strip().lstrip("#")
    return int(value) if value.isdigit() else None


async def channel_names(ctx: Ctx, org_id: int) -> dict[int, str]:
    async with ctx.state.reader.connect() as conn:
        return await deliveries.channel_names(conn, ctx.who, org_id)


def current_attempts(delivery: dict[str, Any]) -> list[dict[str, Any]]:
    """Attempts newest series first, so a redelivery's outcome is on top."""
    return sorted(delivery["attempts"], key=lambda a: (-a["series"], a["number"]))


@router.get("/orgs/{org_id}/deliveries")
async def delivery_log(
    request: Request,
    org_id: int,
    channel_id: str | None = None,
    run_id: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    before_id: str | None = None,
) -> Response:
    ctx = await Ctx.of(request)
    # Narrowed to this organization: the list shows its deliveries only.
    only_here = replace(ctx.who, roles={org_id: ctx.who.role_in(org_id)})
    by_channel, by_run = _int(channel_id), _int(run_id)
    filters = {
        "channel_id": by_channel,
        "run_id": by_run,
        "status": status or None,
        "event_type": event_type or None,
    }
    error = None
    items: list[dict[str, Any]] = []
    listed: dict[str, Any] = {"next_before_id": None}
    # A page that may read many rows: off the event loop's thread (store/db.py), with the
    # channel names on the same connection (one round trip less to PostgreSQL).
    async with ctx.state.slow_reader.connect() as conn:
        names = await deliveries.channel_names(conn, ctx.who, org_id)
        try:
            listed = await deliveries.list_deliveries(
                conn,
                only_here,
                channel_id=by_channel,
                run_id=by_run,
                status=status or None,
                event_type=event_type or None,
                limit=PAGE,
                before_id=_int(before_id),
            )
            items = listed["items"]
        except (Invalid, NotFound) as exc:
            # A wrong filter (a run of another organization, a status typed into the
            # address) is said above an empty list; the organization itself was checked.
            error = exc.message
    # The next page's cursor; None with a run (its deliveries come oldest first, on one
    # page) and after an error.
    older = listed["next_before_id"]
    return await ctx.render(
        "deliveries.html",
        org_id=org_id,
        section="deliveries",
        items=items,
        filters={k: ("" if v is None else str(v)) for k, v in filters.items()},
        names=names,
        events=[e.value for e in EventType],
        statuses=deliveries.STATUSES,
        older=older,
        page=PAGE,
        error=error,
        can_manage=ctx.can_manage(org_id),
        attempts_of=current_attempts,
        since=(datetime.now(UTC) - BULK_SINCE).strftime("%Y-%m-%dT%H:%M"),
        query=str(request.url.query),
    )


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, delivery_id: int) -> Response:
    ctx = await Ctx.of(request)
    form = await ctx.form()
    async with ctx.state.engine.begin() as conn:
        await deliveries.redeliver(conn, ctx.who, delivery_id)
    ctx.state.wakeup.poke()
    back = safe_next(str(form.get("back") or "/"))
    return ctx.redirect(back, f"Delivery {delivery_id} is being sent again.")


@router.post("/orgs/{org_id}/deliveries/redeliver-failed")
async def redeliver_failed(request: Request, org_id: int) -> Response:
    """Every delivery that failed since the given time (UTC), optionally of one channel."""
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "redeliver notifications")  # before reading the form's time
    back = f"/orgs/{org_id}/deliveries"
    raw = str(form.get("since") or "").strip()
    try:
        since = datetime.fromisoformat(raw)
    except ValueError:
        return ctx.redirect(
            back, f"'{raw}' is not a time; give one such as 2025-07-03T14:30 (UTC)."
        )
    since = since.replace(tzinfo=UTC) if since.tzinfo is None else since
    channel_id = _int(str(form.get("channel_id") or ""))
    async with ctx.state.engine.begin() as conn:
        ids = await deliveries.redeliver_failed(conn, ctx.who, org_id, since, channel_id=channel_id)
    if ids:
        ctx.state.wakeup.poke()
    when = since.strftime("%Y-%m-%d %H:%M UTC")
    if not ids:
        return ctx.redirect(back, f"No delivery failed since {when}; nothing to send again.")
    return ctx.redirect(
        back + "?status=pending",
        f"{len(ids)} failed deliveries since {when} are being sent again.",
    )
