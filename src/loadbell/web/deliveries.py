"""The delivery log: filter by channel, run, status and event; each delivery with its
attempts (request headers masked, response, timing, error); "Redeliver" one, or every
failed delivery that the filters select."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.domain.events import EventType
from loadbell.services import deliveries
from loadbell.services.errors import Invalid, NotFound
from loadbell.store.delivery_log import TOTAL_CAP
from loadbell.web.pages import Ctx, PageRoute
from loadbell.web.signin import safe_next

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE = 50


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
    after_id: str | None = None,
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
    # Newest first, paged back with before_id and forward ("Newer") with after_id; a run's
    # deliveries oldest first, the other way round.
    ahead, behind = ("after_id", "before_id") if by_run is not None else ("before_id", "after_id")
    cursors = {"before_id": _int(before_id), "after_id": _int(after_id)}
    backward = cursors[behind] is not None
    error = None
    items: list[dict[str, Any]] = []
    listed: dict[str, Any] = {"next_before_id": None, "next_after_id": None}
    total = None
    bulk = None
    # A page that may read many rows: off the event loop's thread (store/db.py). Everything
    # it reads goes on this one connection, the menu too: on PostgreSQL each checkout costs
    # a round trip to a server on the same cores (store/db.py: _ping; D57).
    async with ctx.state.slow_reader.connect() as conn:
        names = await deliveries.channel_names(conn, ctx.who, org_id)
        try:

            async def read(back: bool, cursor: dict[str, int | None]) -> dict[str, Any]:
                return await deliveries.list_deliveries(
                    conn,
                    only_here,
                    channel_id=by_channel,
                    run_id=by_run,
                    status=status or None,
                    event_type=event_type or None,
                    limit=PAGE,
                    before_id=cursor["before_id"],
                    after_id=cursor["after_id"],
                    backward=back,
                )

            listed = await read(backward, cursors)
            if backward and listed[f"next_{behind}"] is None and len(listed["items"]) < PAGE:
                # Back at the start: show the first page, full, with no "Newer" link.
                backward, cursors = False, {"before_id": None, "after_id": None}
                listed = await read(False, cursors)
            items = listed["items"]
            total = await deliveries.count_deliveries(
                conn,
                only_here,
                channel_id=by_channel,
                run_id=by_run,
                status=status or None,
                event_type=event_type or None,
            )
        except (Invalid, NotFound) as exc:
            # A wrong filter (a run of another organization, a status typed into the
            # address) is said above an empty list; the organization itself was checked.
            error = exc.message
        if ctx.can_manage(org_id) and error is None and filters["status"] in (None, "failed"):
            # "Redeliver all failed" restarts what these filters select, and says how many
            # first; the newest id counted bounds it, so it sends nothing newer than what
            # it announced. Counted like the total, up to TOTAL_CAP ("5,000+"): an exact
            # count of 60,000 failures took 20-40 ms on PostgreSQL even index-only (D56).
            count, newest = await deliveries.count_failed(
                conn,
                ctx.who,
                org_id,
                channel_id=by_channel,
                run_id=by_run,
                event_type=event_type or None,
                cap=TOTAL_CAP,
            )
            capped = count > TOTAL_CAP
            bulk = {
                "count": min(count, TOTAL_CAP),
                "capped": capped,
                "shown": f"{TOTAL_CAP:,}+" if capped else str(count),
                "up_to_id": newest,
            }
        menu = await ctx.nav(org_id, None, "deliveries", conn)
    pages = _pages(items, listed, ahead, behind, cursors, backward)
    kept = {k: str(v) for k, v in filters.items() if v is not None}
    return await ctx.render(
        "deliveries.html",
        org_id=org_id,
        section="deliveries",
        menu=menu,
        off_loop=True,
        items=items,
        filters={k: ("" if v is None else str(v)) for k, v in filters.items()},
        names=names,
        events=[e.value for e in EventType],
        statuses=deliveries.STATUSES,
        ahead=pages["ahead"],
        behind=pages["behind"],
        ahead_label="Later deliveries" if by_run is not None else "Older deliveries",
        behind_label="Earlier deliveries" if by_run is not None else "Newer deliveries",
        short=pages["short"],
        total=total,
        page=PAGE,
        error=error,
        can_manage=ctx.can_manage(org_id),
        attempts_of=current_attempts,
        bulk=bulk,
        query=str(request.url.query),
        kept_query=urlencode(kept),
    )


def _pages(
    items: list[dict[str, Any]],
    listed: dict[str, Any],
    ahead: str,
    behind: str,
    cursors: dict[str, int | None],
    backward: bool,
) -> dict[str, Any]:
    """The page's links: ``ahead`` (older; a run's later) and ``behind`` (newer; a run's
    earlier), each ``(parameter, id)`` or None, and whether this page is short with more
    to read ahead (a rare filter: store/delivery_log.py)."""
    # ids grow toward "ahead" for a run (ascending), shrink for the newest-first log
    step = 1 if ahead == "after_id" else -1
    go_ahead: tuple[str, int] | None = None
    go_behind: tuple[str, int] | None = None
    if backward:
        edge = cursors[behind] or 0
        go_ahead = (ahead, items[-1]["id"] if items else edge - step)
        if listed[f"next_{behind}"] is not None:
            go_behind = (behind, listed[f"next_{behind}"])
    else:
        if listed[f"next_{ahead}"] is not None:
            go_ahead = (ahead, listed[f"next_{ahead}"])
        start = cursors[ahead]
        if start is not None:
            go_behind = (behind, items[0]["id"] if items else start + step)
    short = not backward and go_ahead is not None and len(items) < PAGE
    return {"ahead": go_ahead, "behind": go_behind, "short": short}


@router.get("/deliveries/{delivery_id}")
async def delivery_page(request: Request, delivery_id: int) -> Response:
    """One delivery, GitHub's "Recent Deliveries" way: each attempt's request (URL,
    headers, the body sent) and response (status, headers, body excerpt, time), secrets
    masked as in the API, each block with a copy button."""
    ctx = await Ctx.of(request)
    async with ctx.state.reader.connect() as conn:
        delivery = await deliveries.get_delivery(conn, ctx.who, delivery_id)
    org_id = int(delivery["organization_id"])
    return await ctx.render(
        "delivery.html",
        org_id=org_id,
        section="deliveries",
        d=delivery,
        names=await channel_names(ctx, org_id),
        can_manage=ctx.can_manage(org_id),
        attempts=current_attempts(delivery),
        query="",
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
    """Every failed delivery that the log's filters select (channel, run, event), up to
    the newest one the page counted; deliveries of deleted channels are skipped."""
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "redeliver notifications")
    kept = {key: str(form.get(key) or "").strip() for key in ("channel_id", "run_id", "event_type")}
    back = f"/orgs/{org_id}/deliveries"
    query = urlencode({k: v for k, v in kept.items() if v})
    async with ctx.state.engine.begin() as conn:
        ids = await deliveries.redeliver_failed(
            conn,
            ctx.who,
            org_id,
            None,
            channel_id=_int(kept["channel_id"]),
            run_id=_int(kept["run_id"]),
            event_type=kept["event_type"] or None,
            up_to_id=_int(str(form.get("up_to_id") or "")),
        )
    if not ids:
        where = f"{back}?{query}" if query else back
        return ctx.redirect(where, "No failed delivery matches these filters; nothing was sent.")
    ctx.state.wakeup.poke()
    query = urlencode({**{k: v for k, v in kept.items() if v}, "status": "pending"})
    sent = "1 failed delivery is" if len(ids) == 1 else f"{len(ids)} failed deliveries are"
    return ctx.redirect(f"{back}?{query}", f"{sent} being sent again.")
