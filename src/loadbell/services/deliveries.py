"""Deliveries: the log of what was sent (each delivery with its attempts), and redelivery.

A redelivery only stages the new series (``store/redelivery.py``); the edge commits and then
wakes the worker. A list filter naming a channel or run the caller cannot see is a
:class:`NotFound`, with the message a direct read of it gives (``access.filter_target``): a
caller learns no more from a list than from a read.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.services import access
from loadbell.services.access import Principal
from loadbell.services.errors import conflict, invalid
from loadbell.services.events import checked_type
from loadbell.store import delivery_log, redelivery
from loadbell.store.tables import (
    DELIVERY_FAILED,
    DELIVERY_HELD,
    DELIVERY_PENDING,
    DELIVERY_SKIPPED,
    DELIVERY_SUCCEEDED,
    DELIVERY_SUPPRESSED,
    channels,
    deliveries,
    delivery_attempts,
    runs,
)

STATUSES = (
    DELIVERY_PENDING,
    DELIVERY_HELD,
    DELIVERY_SUCCEEDED,
    DELIVERY_FAILED,
    DELIVERY_SKIPPED,
    DELIVERY_SUPPRESSED,
)


# What a page of the log reads of each attempt. A delivery read alone also has the
# exchange's larger parts (EXCHANGE): a page of 100 deliveries would carry up to 64 KiB of
# request body per attempt.
LISTED = (
    "delivery_id",
    "series",
    "number",
    "started_at",
    "duration_ms",
    "outcome",
    "request_url",
    "request_headers",
    "response_status",
    "response_body",
    "error",
)
EXCHANGE = ("request_body", "request_body_bytes", "response_headers")


def _attempt(a: Any, full: bool) -> dict[str, Any]:
    out = {
        "series": a.series,
        "number": a.number,
        "started_at": a.started_at,
        "duration_ms": a.duration_ms,
        "outcome": a.outcome,
        "request_url": a.request_url,
        "request_headers": a.request_headers,
        "response_status": a.response_status,
        "response_body": a.response_body,
        "error": a.error,
    }
    if full:
        out["request_body"] = a.request_body
        out["request_body_bytes"] = a.request_body_bytes
        out["response_headers"] = a.response_headers
    return out


def _view(
    d: Any, attempts: list[Any], deleted: Collection[int], full: bool = False
) -> dict[str, Any]:
    return {
        "id": d.id,
        "uuid": d.uuid,
        "status": d.status,
        "reason": d.reason,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "organization_id": d.organization_id,
        "run_id": d.run_id,
        "channel_id": d.channel_id,
        # A deleted channel's delivery can no longer be sent (``redeliver`` refuses it).
        "channel_deleted": d.channel_id in deleted,
        "target": d.target,
        "series": d.series,
        "attempt_count": d.attempts,
        # seconds since the epoch in the table; a pending delivery has a next attempt, a held
        # one the end of its quiet hours
        "next_attempt_at": (
            datetime.fromtimestamp(d.next_attempt_at, UTC)
            if d.status in (DELIVERY_PENDING, DELIVERY_HELD)
            else None
        ),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "attempts": [_attempt(a, full) for a in attempts],
    }


def _base() -> sa.Select[Any]:
    # The event type and run are the delivery's own copies (tables.py).
    return sa.select(deliveries)


async def _attempts_for(
    conn: AsyncConnection, ids: list[int], full: bool = False
) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {i: [] for i in ids}
    if ids:
        names = LISTED + EXCHANGE if full else LISTED
        rows = await conn.execute(
            sa.select(*(delivery_attempts.c[n] for n in names))
            .where(delivery_attempts.c.delivery_id.in_(ids))
            .order_by(delivery_attempts.c.id)
        )
        for a in rows:
            grouped[a.delivery_id].append(a)
    return grouped


async def _deleted_channels(conn: AsyncConnection, ids: Collection[int]) -> set[int]:
    """Which of these channels were deleted (a page's few channels: one indexed read)."""
    if not ids:
        return set()
    rows = await conn.execute(
        sa.select(channels.c.id)
        .where(channels.c.id.in_(sorted(set(ids))))
        .where(channels.c.deleted_at.is_not(None))
    )
    return {r.id for r in rows}


async def _one(conn: AsyncConnection, delivery_id: int, full: bool = False) -> dict[str, Any]:
    row = (await conn.execute(_base().where(deliveries.c.id == delivery_id))).one()
    attempts = await _attempts_for(conn, [delivery_id], full)
    deleted = await _deleted_channels(conn, [row.channel_id])
    return _view(row, attempts[delivery_id], deleted, full)


async def list_deliveries(
    conn: AsyncConnection,
    principal: Principal,
    *,
    channel_id: int | None = None,
    run_id: int | None = None,
    status: str | None = None,
    event_type: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
    after_id: int | None = None,
    backward: bool = False,
) -> dict[str, Any]:
    """Newest first, paged with ``before_id``; with ``run_id``, in event order, paged with
    ``after_id`` (a run's notifications read like its timeline). ``next_before_id`` (or
    ``next_after_id``) is the cursor of the next page, None after the last: a page may be
    short and still have one, when a rare combination of filters left few matches among
    the rows one page reads (store/delivery_log.py).

    ``backward`` pages the other way (the web's "Newer" and "Earlier" links): newer than
    ``after_id`` (with a run, earlier than ``before_id``), still shown in the log's order,
    with the cursor to go on that way in ``next_after_id`` (with a run, ``next_before_id``)."""
    where = await _log_filter(
        conn, principal, channel_id=channel_id, run_id=run_id, status=status, event_type=event_type
    )
    # Reading descending (newest first) pages with before_id, ascending with after_id.
    descending = where.ascending == backward
    if descending:
        cursor = access.cursor("before_id", before_id)
    else:
        cursor = access.cursor("after_id", after_id)
    page = await delivery_log.read_page(
        conn, where, cursor=cursor, limit=access.page_limit(limit), backward=backward
    )
    attempts = await _attempts_for(conn, [r.id for r in page.rows])
    deleted = await _deleted_channels(conn, {r.channel_id for r in page.rows})
    return {
        "items": [_view(r, attempts[r.id], deleted) for r in page.rows],
        "next_before_id": page.next_cursor if descending else None,
        "next_after_id": None if descending else page.next_cursor,
    }


async def count_deliveries(
    conn: AsyncConnection,
    principal: Principal,
    *,
    channel_id: int | None = None,
    run_id: int | None = None,
    status: str | None = None,
    event_type: str | None = None,
) -> delivery_log.Total:
    """How many deliveries the filters select, bounded (store/delivery_log.py: count):
    exact up to 5,000, else "5,000+"; with a filter checked row by row, at least the
    matches among the range's newest 5,000."""
    where = await _log_filter(
        conn, principal, channel_id=channel_id, run_id=run_id, status=status, event_type=event_type
    )
    return await delivery_log.count(conn, where)


async def _log_filter(
    conn: AsyncConnection,
    principal: Principal,
    *,
    channel_id: int | None,
    run_id: int | None,
    status: str | None,
    event_type: str | None,
) -> delivery_log.LogFilter:
    if status is not None and status not in STATUSES:
        raise invalid("status", f"use one of {', '.join(STATUSES)}")
    if channel_id is not None:
        await access.filter_target(conn, principal, channels, channel_id, "channel")
    if run_id is not None:
        await access.filter_target(conn, principal, runs, run_id, "run")
    return delivery_log.LogFilter(
        organization_ids=list(principal.roles),
        channel_id=channel_id,
        run_id=run_id,
        status=status,
        event_type=checked_type("event_type", event_type) if event_type is not None else None,
    )


async def get_delivery(
    conn: AsyncConnection, principal: Principal, delivery_id: int
) -> dict[str, Any]:
    """A delivery with every attempt of every series, oldest first, each with the body
    sent and the response headers (what a page of the log leaves out)."""
    await access.delivery(conn, principal, delivery_id)
    return await _one(conn, delivery_id, full=True)


async def redeliver(
    conn: AsyncConnection, principal: Principal, delivery_id: int
) -> dict[str, Any]:
    """Stage a new series of attempts on the same delivery (same id for the receiver).
    Owners and admins only; a delivery of a deleted channel is a :class:`Conflict` (there
    is nothing left to send it with). Wake the worker after the commit."""
    found = await access.delivery(conn, principal, delivery_id)
    principal.require_manage(found._org, "redeliver notifications")
    if await _deleted_channels(conn, [found.channel_id]):
        raise conflict(
            f"delivery {delivery_id} cannot be sent again: its channel was deleted; "
            "set the integration up again to send new notifications"
        )
    await redelivery.restart(conn, deliveries.c.id == delivery_id)
    return await _one(conn, delivery_id, full=True)


async def _failed_filter(
    conn: AsyncConnection,
    principal: Principal,
    organization_id: int,
    since: datetime | None,
    *,
    channel_id: int | None,
    run_id: int | None,
    event_type: str | None,
    up_to_id: int | None,
) -> redelivery.FailedFilter:
    principal.require_manage(organization_id, "redeliver notifications")
    if since is not None:
        try:
            since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable time
            raise invalid(
                "since", "give a time from the year 1 on, such as 2025-07-03T14:30Z"
            ) from None
    if channel_id is not None:
        row = await access.channel(conn, principal, channel_id)
        if row.organization_id != organization_id:
            raise invalid("channel_id", "this channel belongs to another organization")
    if run_id is not None:
        await access.filter_target(conn, principal, runs, run_id, "run")
    return redelivery.FailedFilter(
        organization_id,
        since=since,
        channel_id=channel_id,
        run_id=run_id,
        event_type=checked_type("event_type", event_type) if event_type is not None else None,
        up_to_id=up_to_id,
    )


async def count_failed(
    conn: AsyncConnection,
    principal: Principal,
    organization_id: int,
    since: datetime | None = None,
    *,
    channel_id: int | None = None,
    run_id: int | None = None,
    event_type: str | None = None,
    cap: int | None = None,
) -> tuple[int, int | None]:
    """How many deliveries ``redeliver_failed`` with the same filters would restart now,
    and the id of the newest (pass it back as ``up_to_id`` to restart only those). With
    ``cap``, a count above it means "more than ``cap``" (the newest ``cap + 1`` counted)."""
    failed = await _failed_filter(
        conn,
        principal,
        organization_id,
        since,
        channel_id=channel_id,
        run_id=run_id,
        event_type=event_type,
        up_to_id=None,
    )
    return await redelivery.count_failed(conn, failed, cap)


async def redeliver_failed(
    conn: AsyncConnection,
    principal: Principal,
    organization_id: int,
    since: datetime | None,
    *,
    channel_id: int | None = None,
    run_id: int | None = None,
    event_type: str | None = None,
    up_to_id: int | None = None,
) -> list[int]:
    """Stage a new series on every failed delivery of the organization's live channels
    that the filters select: failed at or after ``since`` (naive: UTC; None: any time), of
    one channel, run or event type, with an id up to ``up_to_id``. A deleted channel's
    deliveries are skipped. Owners and admins only. Returns the ids; wake the worker after
    the commit when there are any."""
    failed = await _failed_filter(
        conn,
        principal,
        organization_id,
        since,
        channel_id=channel_id,
        run_id=run_id,
        event_type=event_type,
        up_to_id=up_to_id,
    )
    return await redelivery.restart_failed(conn, failed)


async def channel_names(
    conn: AsyncConnection, principal: Principal, organization_id: int
) -> dict[int, str]:
    """The names of the organization's live channels and its projects' channels, by id
    (the delivery log shows and filters by them)."""
    principal.role_in(organization_id)
    rows = await conn.execute(
        sa.select(channels.c.id, channels.c.name)
        .where(channels.c.organization_id == organization_id)
        .where(channels.c.deleted_at.is_(None))
        .order_by(channels.c.id)
    )
    return {r.id: r.name for r in rows}
