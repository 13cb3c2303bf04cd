"""Mutes: silence an organization's notifications, or a project's, a load test's or a
channel's, until a time.

A mute matches an event when every scope it names matches: the organization always, and
the project, the load test and the channel when it sets them. The deliveries a matching
event would have had are still recorded, ``suppressed`` with reason ``muted``, so nothing
disappears without a trace (``suppression`` is what the fan-out calls). Owners and admins
create and delete mutes, as they change channels; members read them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.text import control_character
from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.errors import invalid, not_found
from loadbell.store import mutes as store
from loadbell.store.tables import DELIVERY_SUPPRESSED, channels, load_tests, projects

log = logging.getLogger(__name__)

# The reason a muted event's deliveries are recorded with.
REASON_MUTED = "muted"
STATUS = DELIVERY_SUPPRESSED
# The longest a mute may last: past that, turning the channel (or its override) off says
# what is meant, and the page shows it.
LONGEST = timedelta(days=366)


def view(row: Any, now: datetime | None = None) -> dict[str, Any]:
    """A mute as the edges show it."""
    now = now or datetime.now(UTC)
    return {
        "id": row.id,
        "organization_id": row.organization_id,
        "project_id": row.project_id,
        "load_test_id": row.load_test_id,
        "channel_id": row.channel_id,
        "until": row.until,
        "reason": row.reason,
        "active": row.until > now,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "created_by_name": row.created_by_name,
    }


def checked_until(until: datetime, now: datetime) -> datetime:
    """``until`` when it is a time with a zone within :data:`LONGEST` from ``now``."""
    if until.tzinfo is None or until.utcoffset() is None:
        raise invalid(
            "until",
            "give a time with its zone, such as 2026-12-06T18:00:00Z or 2026-12-06T19:00:00+01:00",
        )
    if until <= now:
        raise invalid(
            "until",
            f"must be in the future (it is {now.isoformat(timespec='seconds')} now); "
            "a mute that has ended is deleted with DELETE /mutes/{id}",
        )
    if until - now > LONGEST:
        raise invalid(
            "until",
            f"a mute lasts at most {LONGEST.days} days; to silence a channel for longer, "
            "disable it (or its project override) instead",
        )
    return until.astimezone(UTC)


def checked_reason(reason: str) -> str:
    """The reason trimmed, when it is one line of 1 to 500 characters."""
    text = reason.strip()
    if not text:
        raise invalid("reason", "is empty; say why, for the people who read the list")
    if len(text) > 500:
        raise invalid("reason", f"has {len(text)} characters; keep it to 500")
    found = control_character(text)
    if found is not None:
        raise invalid("reason", f"contains the control character {found}; give one line")
    return text


async def _scope_error(
    conn: AsyncConnection,
    organization_id: int,
    project_id: int | None,
    load_test_id: int | None,
    channel_id: int | None,
) -> None:
    """Invalid naming the first scope that does not exist in the organization or does not
    fit the others."""
    if project_id is not None:
        org = (
            await conn.execute(
                sa.select(projects.c.organization_id)
                .where(projects.c.id == project_id)
                .where(projects.c.deleted_at.is_(None))
            )
        ).scalar()
        if org != organization_id:
            raise invalid(
                "project_id",
                f"organization {organization_id} has no project {project_id}; give one of "
                "its projects (GET /projects), or leave it out to mute the whole organization",
            )
    if load_test_id is not None:
        found = (
            await conn.execute(
                sa.select(load_tests.c.project_id, projects.c.organization_id)
                .join(projects, projects.c.id == load_tests.c.project_id)
                .where(load_tests.c.id == load_test_id)
                .where(load_tests.c.deleted_at.is_(None))
                .where(projects.c.deleted_at.is_(None))
            )
        ).first()
        if found is None or found.organization_id != organization_id:
            raise invalid(
                "load_test_id",
                f"organization {organization_id} has no load test {load_test_id}; give one "
                "of its load tests (GET /load-tests)",
            )
        if project_id is not None and found.project_id != project_id:
            raise invalid(
                "load_test_id",
                f"load test {load_test_id} belongs to project {found.project_id}, not to "
                f"project {project_id}; give its own project_id or leave project_id out",
            )
    if channel_id is not None:
        found = (
            await conn.execute(
                sa.select(channels.c.organization_id, channels.c.project_id)
                .where(channels.c.id == channel_id)
                .where(channels.c.deleted_at.is_(None))
            )
        ).first()
        if found is None or found.organization_id != organization_id:
            raise invalid(
                "channel_id",
                f"organization {organization_id} has no channel {channel_id}; give one of "
                "its channels (GET /channels)",
            )
        if found.project_id is not None and project_id is not None:
            if found.project_id != project_id:
                raise invalid(
                    "channel_id",
                    f"channel {channel_id} is project {found.project_id}'s own, so it never "
                    f"gets project {project_id}'s events; give a channel that does",
                )


async def create(
    conn: AsyncConnection,
    principal: Principal,
    *,
    organization_id: int,
    until: datetime,
    reason: str,
    project_id: int | None = None,
    load_test_id: int | None = None,
    channel_id: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store a mute once every value is checked (nothing is stored otherwise)."""
    principal.require_manage(organization_id, "mute notifications")
    now = now or datetime.now(UTC)
    until = checked_until(until, now)
    reason = checked_reason(reason)
    await _scope_error(conn, organization_id, project_id, load_test_id, channel_id)
    mute_id = await store.insert(
        conn,
        {
            "organization_id": organization_id,
            "project_id": project_id,
            "load_test_id": load_test_id,
            "channel_id": channel_id,
            "until": until,
            "reason": reason,
            "created_by": principal.user_id,
        },
    )
    return view(await store.read(conn, mute_id), now)


async def _visible(conn: AsyncConnection, principal: Principal, mute_id: int) -> Any:
    access.known_id("mute", mute_id)
    row = await store.read(conn, mute_id)
    if row is None or row.organization_id not in principal.roles:
        raise not_found("mute", mute_id)
    return row


async def get(conn: AsyncConnection, principal: Principal, mute_id: int) -> dict[str, Any]:
    return view(await _visible(conn, principal, mute_id))


async def delete(conn: AsyncConnection, principal: Principal, mute_id: int) -> dict[str, Any]:
    """Remove a mute (in force or ended): the events after it are sent again. Returns
    what was removed."""
    row = await _visible(conn, principal, mute_id)
    principal.require_manage(row.organization_id, "unmute notifications")
    await store.delete(conn, mute_id)
    return view(row)


async def list_mutes(
    conn: AsyncConnection,
    principal: Principal,
    *,
    organization_id: int | None = None,
    project_id: int | None = None,
    load_test_id: int | None = None,
    channel_id: int | None = None,
    active: bool = True,
    limit: int = 100,
    before_id: int | None = None,
) -> dict[str, Any]:
    """Newest first, a page at a time (``before_id``). ``active``: the mutes in force, or
    (false) those whose ``until`` has passed. A filter naming something the caller cannot
    see is a NotFound, as reading it would be."""
    orgs = list(principal.roles)
    if organization_id is not None:
        principal.role_in(organization_id)
        orgs = [organization_id]
    for table, ident, what in (
        (projects, project_id, "project"),
        (channels, channel_id, "channel"),
    ):
        if ident is not None:
            await access.filter_target(conn, principal, table, ident, what)
    if load_test_id is not None:
        await access.load_test(conn, principal, load_test_id)
    size = access.page_limit(limit)
    now = datetime.now(UTC)
    rows = await store.page(
        conn,
        orgs,
        now=now,
        active=active,
        project_id=project_id,
        load_test_id=load_test_id,
        channel_id=channel_id,
        limit=size,
        before_id=access.cursor("before_id", before_id),
    )
    return {
        "items": [view(r, now) for r in rows],
        "next_before_id": rows[-1].id if len(rows) == size else None,
    }


async def in_force_for_run(
    conn: AsyncConnection, principal: Principal, run_id: int
) -> list[dict[str, Any]]:
    """The mutes in force that silence some or all of the events of the run's load test:
    the organization's, the project's and the load test's own (the run page shows them)."""
    row = await access.run(conn, principal, run_id)
    now = datetime.now(UTC)
    found = await store.in_force_for_load_test(
        conn, row.organization_id, row.project_id, row.load_test_id, now
    )
    return [view(r, now) for r in found]


class Suppression:
    """The mutes in force for one event, read once: :meth:`of` says whether a channel's
    deliveries of it are suppressed (services/fanout.py)."""

    status = STATUS  # what a muted channel's deliveries are recorded as

    def __init__(self, live: list[store.LiveMute], what: str) -> None:
        self.live = live
        self.what = what  # the event, for the log line

    @classmethod
    async def read(
        cls,
        conn: AsyncConnection,
        organization_id: int,
        project_id: int | None,
        context: dict[str, Any],
        event: str,
    ) -> Suppression:
        load_test = context.get("load_test") or {}
        run = context.get("run") or {}
        live = await store.live_mutes(
            conn, organization_id, project_id, load_test.get("id"), datetime.now(UTC)
        )
        what = f"{event} of run {run['id']}" if run.get("id") else event
        return cls(live, what)

    def of(self, channel_id: int) -> str | None:
        """REASON_MUTED when a mute covers the channel (logged with the mute's id), else
        None."""
        if not self.live:
            return None
        mute = store.covering(self.live, channel_id)
        if mute is None:
            return None
        # The delivery records the reason; which mute it was is in the server log.
        log.info("mute %d suppresses %s for channel %d", mute.id, self.what, channel_id)
        return REASON_MUTED
