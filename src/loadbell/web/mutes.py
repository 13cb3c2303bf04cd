"""Muting a load test from its run page: for an hour, a day or a week, and unmuting.

Both forms post here and redirect back to the run page (post/redirect/get). The operations
are ``services/mutes.py``'s, with the signed-in person as the caller: owners and admins
only, as in the API (the page shows members no buttons).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.services import mutes, runs
from loadbell.services.errors import invalid
from loadbell.web.pages import Ctx, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# The run page's choices: form value -> (how long, how the page says it).
DURATIONS: dict[str, tuple[timedelta, str]] = {
    "1h": (timedelta(hours=1), "1 hour"),
    "1d": (timedelta(days=1), "1 day"),
    "1w": (timedelta(weeks=1), "1 week"),
}


def _field(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


@router.post("/runs/{run_id}/mute")
async def mute_load_test(request: Request, run_id: int) -> Response:
    """Mute the run's load test (every channel) for the chosen time."""
    ctx = await Ctx.of(request)
    form = await ctx.form()
    chosen = DURATIONS.get(_field(form.get("duration")))
    if chosen is None:
        raise invalid("duration", f"choose one of {', '.join(d for _, d in DURATIONS.values())}")
    length, said = chosen
    async with ctx.state.engine.begin() as conn:
        run = await runs.get_run(conn, ctx.who, run_id, ctx.state.settings.base_url)
        made = await mutes.create(
            conn,
            ctx.who,
            organization_id=run["organization_id"],
            project_id=run["project_id"],
            load_test_id=run["load_test_id"],
            until=datetime.now(UTC) + length,
            reason=_field(form.get("reason"))[:500]
            or f"muted for {said} from the page of run #{run_id}",
        )
    until = made["until"].strftime("%Y-%m-%d %H:%M UTC")
    return ctx.redirect(
        f"/runs/{run_id}#mutes",
        f"{run['load_test_name']} is muted until {until}: its notifications are recorded, "
        "not sent.",
    )


@router.post("/runs/{run_id}/unmute")
async def unmute(request: Request, run_id: int) -> Response:
    """Delete one of the mutes the run page shows."""
    ctx = await Ctx.of(request)
    form = await ctx.form()
    try:
        mute_id = int(_field(form.get("mute_id")))
    except ValueError:
        raise invalid("mute_id", "unmute from the run page's button") from None
    async with ctx.state.engine.begin() as conn:
        run = await runs.get_run(conn, ctx.who, run_id, ctx.state.settings.base_url)
        await mutes.delete(conn, ctx.who, mute_id)
    return ctx.redirect(
        f"/runs/{run_id}#mutes", f"Unmuted: {run['load_test_name']}'s notifications are sent again."
    )
