"""The delivery log's pages: keyset pagination on one index, and a bound on what a page reads.

A page is the deliveries that match the filters, in id order (newest first; a run's oldest
first), after a cursor. Each page reads one index range and never sorts: every filter of
the log leads an index that ends with ``id`` (tables.py), on columns of ``deliveries``
itself (the event type, run and organization are copied there when a delivery is staged).

Which index leads a page (``_driving``): the run's, else the channel's, else the
organization's with the status (which also holds the event type), else with the event type,
else the organization's alone. The planner picks among them by their statistics
(``store/optimize.py``); each ends with ``id``, so none sorts, and
tests/store/test_delivery_log.py checks SQLite's plan of every shape.

A filter that the leading index does not hold (a status with a channel, say) is checked
row by row, and a rare combination could walk the whole range. So such a page reads at
most ``SCAN`` index entries: one index-only statement finds the id of the ``SCAN``-th entry
after the cursor (the range's edge), then the page is read within that range. When the
range holds fewer than ``limit`` matches, the page is short and its next cursor is the
edge: the client pages on, and no page reads more than ``SCAN`` entries.

The organization is a filter of its own only without a channel or run (which belong to one
organization, checked by the caller). A caller of several organizations gets one range per
organization, merged here: the page is complete up to the nearest edge of those ranges.

The ranges are read for ids only, from the index where it holds every filter (all but a
channel's or run's with another filter), and the page's rows are then read by id: a caller
of four organizations reads four ranges of ids and one page of rows, not four pages.

Invariant: the pages from a cursor to the end hold every match exactly once, each in order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.tables import deliveries

# Index entries one page reads at most when a filter is not in its index. SQLite looks up
# 5,000 rows in 5-30 ms on a loaded 2-core machine; a page that found fewer than ``limit``
# matches among them says where to go on.
SCAN = 5_000

# The index that leads a page, by the filters it holds (tables.py, migration 0007).
BY_RUN = "ix_deliveries_run_id"
BY_CHANNEL = "ix_deliveries_channel_id"
BY_STATUS = "ix_deliveries_log_status"
BY_EVENT_TYPE = "ix_deliveries_log_event_type"
BY_ORGANIZATION = "ix_deliveries_log"


@dataclass(frozen=True)
class LogFilter:
    """What a page of the log shows. ``organization_ids`` limits it when neither a channel
    nor a run does (the caller checked those)."""

    organization_ids: Sequence[int] = ()
    channel_id: int | None = None
    run_id: int | None = None
    status: str | None = None
    event_type: str | None = None

    @property
    def ascending(self) -> bool:
        """A run's deliveries read like its timeline: oldest first."""
        return self.run_id is not None

    def partitions(self) -> list[dict[str, Any]]:
        """The filters of each index range to read: one, or one per organization."""
        base = {
            "run_id": self.run_id,
            "channel_id": self.channel_id,
            "status": self.status,
            "event_type": self.event_type,
        }
        base = {k: v for k, v in base.items() if v is not None}
        if self.run_id is not None or self.channel_id is not None:
            return [base]
        return [{"organization_id": o, **base} for o in sorted(set(self.organization_ids))]


@dataclass(frozen=True)
class Page:
    rows: list[Any]  # deliveries rows, in the page's order
    next_cursor: int | None  # before_id (after_id when ascending) of the next page; None: last


def _driving(eq: dict[str, Any]) -> tuple[str, list[str]]:
    """The index that leads a range, and the filters it holds (the rest are checked)."""
    if "run_id" in eq:
        return BY_RUN, ["run_id"]
    if "channel_id" in eq:
        return BY_CHANNEL, ["channel_id"]
    if "status" in eq:
        return BY_STATUS, ["organization_id", "status"]
    if "event_type" in eq:
        return BY_EVENT_TYPE, ["organization_id", "event_type"]
    return BY_ORGANIZATION, ["organization_id"]


def _where(query: Any, names: Sequence[str]) -> Any:
    for name in names:
        query = query.where(deliveries.c[name] == sa.bindparam(name))
    return query


@functools.lru_cache(maxsize=512)
def _statements(
    names: tuple[str, ...], ascending: bool, cursor: bool, edge: bool, scan: int
) -> tuple[sa.Select[Any], sa.Select[Any] | None]:
    """The statements of a shape of range, built once (SQLAlchemy then caches their SQL):
    the ids of its page, and (when a filter is outside the leading index) the one that
    finds the range's edge. Parameters: the filters by name, ``cursor``, ``edge``,
    ``limit``."""
    _index, held = _driving(dict.fromkeys(names))
    checked = [name for name in names if name not in held]
    order = deliveries.c.id.asc() if ascending else deliveries.c.id.desc()
    after = sa.bindparam("cursor", type_=sa.Integer)

    def ranged(query: Any) -> Any:
        query = _where(query, held)
        if cursor:
            query = query.where(deliveries.c.id > after if ascending else deliveries.c.id < after)
        return query.order_by(order)

    edge_query = None
    if checked:
        edge_query = ranged(sa.select(deliveries.c.id)).offset(scan - 1).limit(1)
    page = _where(ranged(sa.select(deliveries.c.id)), checked)
    if edge:
        until = sa.bindparam("edge", type_=sa.Integer)
        page = page.where(deliveries.c.id <= until if ascending else deliveries.c.id >= until)
    return page.limit(sa.bindparam("limit", type_=sa.Integer)), edge_query


def range_select(
    eq: dict[str, Any],
    *,
    ascending: bool,
    cursor: int | None,
    edge: int | None,
    limit: int,
) -> tuple[sa.Select[Any], sa.Select[Any] | None]:
    """One range's statements with their values bound (for the plan test,
    tests/store/test_delivery_log.py)."""
    page, edge_query = _statements(tuple(eq), ascending, cursor is not None, edge is not None, SCAN)
    values = {**eq, "cursor": cursor, "edge": edge, "limit": limit}
    page = page.params({k: v for k, v in values.items() if v is not None})
    if edge_query is not None:
        edge_query = edge_query.params({k: v for k, v in values.items() if v is not None})
    return page, edge_query


async def _range(
    conn: AsyncConnection, eq: dict[str, Any], ascending: bool, cursor: int | None, limit: int
) -> tuple[list[int], int | None]:
    """A range's page of ids, and how far it is complete: the last id when it is full, the
    edge when the range was cut at ``SCAN`` entries, None when it reached the end."""
    names = tuple(eq)
    values = dict(eq)
    if cursor is not None:
        values["cursor"] = cursor
    _, edge_query = _statements(names, ascending, cursor is not None, False, SCAN)
    edge = None
    if edge_query is not None:
        edge = (await conn.execute(edge_query, values)).scalar()
    page, _ = _statements(names, ascending, cursor is not None, edge is not None, SCAN)
    if edge is not None:
        values["edge"] = edge
    ids = list((await conn.execute(page, {**values, "limit": limit})).scalars())
    if len(ids) == limit:
        return ids, ids[-1]
    return ids, edge


async def read_page(
    conn: AsyncConnection,
    where: LogFilter,
    *,
    cursor: int | None,
    limit: int,
    backward: bool = False,
) -> Page:
    """One page of the log after ``cursor`` (before it, newest first; after it for a run).
    ``backward`` reads the other way from ``cursor`` (the newer page of a newest-first log,
    the earlier one of a run's), the rows still in the log's order; its ``next_cursor``
    goes on backward."""
    ascending = where.ascending != backward
    ids: list[int] = []
    bounds: list[int] = []
    for eq in where.partitions():
        # One id more than the page: whether another page follows, so the last page has
        # no cursor to an empty one.
        found, complete_to = await _range(conn, eq, ascending, cursor, limit + 1)
        ids.extend(found)
        if complete_to is not None:
            bounds.append(complete_to)
    # Complete up to the nearest bound of all ranges: nothing beyond it may be shown yet.
    bound = (min(bounds) if ascending else max(bounds)) if bounds else None
    if bound is not None:
        ids = [i for i in ids if (i <= bound if ascending else i >= bound)]
    ids = sorted(ids, reverse=not ascending)[: limit + 1]
    more = len(ids) > limit
    ids = ids[:limit]
    rows: list[Any] = []
    if ids:
        read = await conn.execute(sa.select(deliveries).where(deliveries.c.id.in_(ids)))
        by_id = {r.id: r for r in read}
        rows = [by_id[i] for i in ids if i in by_id]  # one pruned meanwhile is left out
    if backward:
        rows.reverse()
    if more:
        return Page(rows, ids[-1])
    return Page(rows, bound)


# The most matches the log's total counts: past it, the total is "5,000+".
TOTAL_CAP = 5_000


@dataclass(frozen=True)
class Total:
    """How many deliveries match the filters: ``count``, exactly when ``exact``; otherwise
    at least ``count`` (the cap was reached, or a filter outside the leading index was
    checked on the newest ``SCAN`` entries of its range only)."""

    count: int
    exact: bool
    capped: bool  # count is TOTAL_CAP and more match


async def count(conn: AsyncConnection, where: LogFilter) -> Total:
    """The log's total for these filters, bounded like a page: it counts at most
    ``TOTAL_CAP + 1`` index entries per range, and where a filter is checked row by row, at
    most the ``SCAN`` newest entries of the range. So it costs about what one page costs,
    on a log of any length."""
    total, exact, capped = 0, True, False
    for eq in where.partitions():
        names, values = tuple(eq), dict(eq)
        _, edge_query = _statements(names, False, False, False, SCAN)
        edge = None
        if edge_query is not None:
            edge = (await conn.execute(edge_query, values)).scalar()
        page, _ = _statements(names, False, False, edge is not None, SCAN)
        if edge is not None:
            values["edge"] = edge
            exact = False  # the range goes on past the edge: more may match there
        counted = sa.select(sa.func.count()).select_from(page.subquery())
        n = int((await conn.execute(counted, {**values, "limit": TOTAL_CAP + 1})).scalar_one())
        if n > TOTAL_CAP:
            n, exact, capped = TOTAL_CAP, False, True
        total += n
    if total > TOTAL_CAP:
        total, exact, capped = TOTAL_CAP, False, True
    return Total(total, exact, capped)
