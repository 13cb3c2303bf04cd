"""The delivery queue: what a worker claims, and where it writes what its attempts came to.

The worker's hot path does not go through SQLAlchemy: it runs named queries on a connection
of its own, one module per database (``sqlite.py`` on a stdlib ``sqlite3`` connection,
``postgres.py`` on an asyncpg pool), behind the small :class:`WorkQueue` interface below.
SQLAlchemy Core's compiled execution cost several times what the database spends on these
statements, and they run thousands of times a second. Every other statement of the store
keeps SQLAlchemy Core.

Invariants both implementations keep (``docs/architecture.md``, "The worker"):

- **A claim is a lease, and its ``lease_until`` is a fencing token.** A claim writes
  ``lease_owner`` and a fresh ``lease_until``; results and deferrals are written only where
  ``lease_until`` (and the series) is still the one the claim wrote. A worker that lost its
  lease (it stalled, or was presumed dead) can only add its attempt to the log.
- **One attempt is one row.** ``delivery_attempts`` has a unique key on (delivery, series,
  number) and attempts are inserted with ``ON CONFLICT DO NOTHING``; results and deferrals
  are written in one transaction, so a batch written again after a failure adds nothing.
- **Order per channel x run x target.** A delivery with an order key is claimable only when
  no older delivery with the same key is pending.
- **Dead workers release their claims early.** Each worker keeps a row in ``workers`` alive
  (:meth:`WorkQueue.heartbeat`); a claim may take a delivery leased to a worker whose row
  has lapsed, without waiting for the lease.

Rows are mapped by column name: each SELECT list is written out from the field names of the
tuple it fills (``Claimed._fields``), so a row unpacks into it by construction, and
``tests/store/test_queue.py`` holds every column list against the tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from loadbell.domain.health import AutoDisable
from loadbell.domain.inheritance import override_applies
from loadbell.settings import Settings
from loadbell.values import Outcome


class Claimed(NamedTuple):
    """A claimed delivery with its event: what rendering needs. One per delivery, so a named
    tuple (built far faster than a frozen dataclass)."""

    id: int
    uuid: str
    channel_id: int
    target: str | None
    order_key: str | None
    attempts: int  # made so far in this series
    series: int
    event_id: int
    event_type: str
    occurred_at: datetime
    project_id: int | None
    context: dict[str, Any]
    lease_until: float  # epoch seconds; also the fencing token of this claim


# Where each field of Claimed comes from (alias "d": deliveries, "e": events), in field
# order; lease_until is the claim's own value, not read.
CLAIMED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("d", "id"),
    ("d", "uuid"),
    ("d", "channel_id"),
    ("d", "target"),
    ("d", "order_key"),
    ("d", "attempts"),
    ("d", "series"),
    ("d", "event_id"),
    ("e", "type"),
    ("e", "occurred_at"),
    ("e", "project_id"),
    ("e", "context"),
)
CHANNEL_COLUMNS = (
    "id",
    "organization_id",
    "project_id",
    "kind",
    "name",
    "enabled",
    "config",
    "secrets",
    "events",
    "filters",
    "retry",
    "deleted_at",
)
OVERRIDE_COLUMNS = ("channel_id", "project_id", "enabled", "config", "secrets")


def select_list(columns: Sequence[tuple[str, str]], names: Sequence[str]) -> str:
    """``d.id AS id, ...``: the SELECT list that fills the first fields ``names`` of a
    tuple, in order (the others are not read)."""
    named = zip(columns, names[: len(columns)], strict=True)
    return ", ".join(f"{alias}.{col} AS {name}" for (alias, col), name in named)


@dataclass(frozen=True)
class ClaimBatch:
    deliveries: list[Claimed]
    channels: dict[int, dict[str, Any]]  # as store.channels.channel_from_row reads them
    overrides: dict[tuple[int, int], dict[str, Any]]  # as override_from_row reads them
    # The claim took its whole limit: more may be due right now.
    full: bool = False
    # Due deliveries were left because their channel had no room: claim again once it has.
    left: bool = False
    # What the worker derives once per (channel id, project id) of this claim.
    setups: dict[tuple[int, int | None], Any] = field(default_factory=dict)
    # Deliveries leased over another claim's lease (it had run out, or its worker had
    # lapsed): the lease expiries of the metrics.
    taken_over: int = 0


class Completion(NamedTuple):
    """What an attempt came to, and the delivery's new state."""

    delivery_id: int
    series: int
    attempt_number: int
    started_at: datetime
    outcome: Outcome
    status: str  # the delivery's new status
    next_attempt_at: float
    lease_until: float  # of the claim that made the attempt
    channel_id: int = 0
    order_key: str | None = None
    target: str | None = None
    # The channel's thresholds as the delivery's project sees it (None: never disable).
    auto_disable: AutoDisable | None = None


class Recorded(NamedTuple):
    """What a result write did besides writing."""

    # A delivery that waited behind one of the results (same order key) is now pending.
    followers: bool = False
    # Channels this write disabled for failing (domain/health.py).
    disabled: tuple[int, ...] = ()


class HealthRow(NamedTuple):
    """One channel's (or target's) health change from a batch of results, as the upsert
    takes it: a success in the batch resets the count (``last_success_at`` set)."""

    channel_id: int
    target: str  # '': the channel as a whole
    failures: int  # failed for good after the batch's last success (or in all of it)
    first_failure_at: float | None  # of those
    last_success_at: float | None
    last_failure_at: float | None


class Deferral(NamedTuple):
    """A claimed delivery handed back unsent (its destination's pace, a lease too short to
    start, a stopping worker): it is due again at ``due`` and no attempt is counted."""

    delivery_id: int
    series: int
    lease_until: float  # of the claim that took it
    due: float  # epoch seconds


class QueueUnavailable(Exception):
    """The database could not be reached or refused the statement; nothing was written.

    Raised by every :class:`WorkQueue` method instead of the driver's own errors, so the
    worker handles one kind of failure whatever the database.
    """


class QueueConflict(QueueUnavailable):
    """The database broke a deadlock or a serialization conflict with another transaction
    by rolling this statement back. The database is fine: the statement can be tried again
    at once, and it is no outage."""


class WorkQueue(Protocol):
    """The worker's statements, on a connection of its own."""

    async def open(self) -> None:
        """Connect (again, after :meth:`close` or a failure). Raises QueueUnavailable."""

    async def close(self) -> None: ...

    async def claim(
        self,
        *,
        owner: str,
        limit: int,
        lease_seconds: float,
        exclude_channels: Collection[int] = (),
        channel_cap: int | None = None,
        channel_room: Mapping[int, int] | None = None,
        dead_owners: Collection[str] = (),
    ) -> ClaimBatch:
        """Lease up to ``limit`` due deliveries and load what rendering them needs, in one
        transaction. With ``channel_cap``, at most ``channel_room[channel]`` (default
        ``channel_cap``) rows of each channel are leased. Deliveries leased to one of
        ``dead_owners`` are claimable whatever their lease says."""

    async def record(
        self, done: Sequence[Completion], deferred: Sequence[Deferral], worker: str
    ) -> Recorded:
        """Write results and deferrals in one transaction, each fenced by its claim's lease,
        with the health of the channels (and targets) whose deliveries ended, disabling
        those that reached their ``auto_disable`` thresholds (their pending deliveries end
        ``skipped``). Returns whether a delivery that waited behind one of the results
        (same order key) is now pending, and which channels were disabled."""

    async def release_held(self, now: float) -> int:
        """Held deliveries whose quiet hours ended by ``now`` (epoch seconds, by
        ``loadbell.clock``) become pending, due at once; returns how many."""

    async def heartbeat(self, worker: str, alive_until: float, forget_before: float) -> list[str]:
        """Keep ``worker`` alive until ``alive_until``, forget workers that lapsed before
        ``forget_before`` (their leases have all run out), and return the workers that have
        lapsed but may still hold leases."""

    async def leave(self, worker: str) -> None:
        """Remove ``worker``'s row when it stops cleanly."""


# The attempt row's columns, in the order a result's row starts with them.
ATTEMPT_COLUMNS = (
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
    "request_body",
    "request_body_bytes",
    "response_headers",
)
# A result as one row: the attempt row's columns, then the delivery's new status and next
# attempt at, and the lease until of the claim that made the attempt. PostgreSQL takes a
# batch of them as one array of its ``attempt_result`` type (migration 0016: the same
# fields, in this order).
ATTEMPT_RESULT_FIELDS = (*ATTEMPT_COLUMNS, "status", "next_attempt_at", "lease_until")


def _fields_of_result(*names: str) -> itemgetter[tuple[Any, ...]]:
    return itemgetter(*(ATTEMPT_RESULT_FIELDS.index(n) for n in names))


# What a single-row update of a delivery (SQLite's) takes from a result's row, before and
# after the write's time: status, attempts, next attempt at, error, status code; then the
# guards: id, series, lease until.
_UPDATE_SET = _fields_of_result("status", "number", "next_attempt_at", "error", "response_status")
_UPDATE_GUARD = _fields_of_result("delivery_id", "series", "lease_until")


def result_records(
    done: Sequence[Completion], *, stamp: Callable[[datetime], Any], as_json: Callable[[Any], Any]
) -> list[tuple[Any, ...]]:
    """A batch's results, one row each (ATTEMPT_RESULT_FIELDS). ``stamp`` and ``as_json``
    give a timestamp's and a JSON value's form for the driver.

    The rows come sorted by delivery, series and attempt, not in the order the attempts
    ended, so that concurrent writes lock rows in one order. Two workers may write
    results of the same deliveries at once: one that lapsed and one that took over its
    claims. Each then inserts the same attempt keys, and each waits for the other's
    uncommitted row. In opposite orders that was a deadlock, which PostgreSQL broke by
    failing one write (seen after a database outage, when every worker had lapsed)."""
    rows = []
    for c in sorted(done, key=_by_attempt):
        o = c.outcome
        rows.append(
            (
                c.delivery_id,
                c.series,
                c.attempt_number,
                stamp(c.started_at),
                round(o.duration_ms, 3),
                o.verdict.value,
                o.request_url,
                as_json(o.request_headers),
                o.status_code,
                o.body_excerpt,
                o.error,
                o.request_body,
                o.request_body_bytes,
                None if o.response_headers is None else as_json(o.response_headers),
                c.status,
                c.next_attempt_at,
                c.lease_until,
            )
        )
    return rows


def attempt_row(result: tuple[Any, ...], worker: str) -> tuple[Any, ...]:
    """An attempt row as a single-row insert takes it, from a result's row: its columns,
    the worker, then the claim's lease until (the fence)."""
    return (*result[: len(ATTEMPT_COLUMNS)], worker, result[-1])


def result_rows(
    done: Sequence[Completion],
    worker: str,
    *,
    now: Any,
    stamp: Callable[[datetime], Any],
    as_json: Callable[[Any], Any],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The parameter rows of a result write as single-row statements take them (SQLite's):
    (deliveries' updates, attempt rows), sorted as :func:`result_records`; ``now`` is the
    stamped time of the write."""
    records = result_records(done, stamp=stamp, as_json=as_json)
    updates = [(*_UPDATE_SET(r), now, *_UPDATE_GUARD(r)) for r in records]
    return updates, [attempt_row(r, worker) for r in records]


def _by_attempt(c: Completion) -> tuple[int, int, int]:
    return c.delivery_id, c.series, c.attempt_number


def health_rows(done: Sequence[Completion], now: float) -> list[HealthRow]:
    """The health upserts of a batch of results: one per channel, and one per target of
    deliveries that have one, in the order of the results. Only ends count: succeeded, or
    failed for good. A result written by a worker that had lost its lease counts too (the
    health write is not fenced: that only happens after a stall, and costs one count)."""
    state: dict[tuple[int, str], list[Any]] = {}
    for c in done:
        if c.status == "pending":
            continue
        ok = c.status == "succeeded"
        keys = [(c.channel_id, "")]
        if c.target:
            keys.append((c.channel_id, c.target))
        for key in keys:
            # failures, first failure, last success, last failure
            s = state.setdefault(key, [0, None, None, None])
            if ok:
                s[0], s[1], s[2] = 0, None, now
            else:
                s[0] += 1
                s[1] = s[1] or now
                s[3] = now
    # Sorted: concurrent workers then lock the rows in one order (PostgreSQL would find a
    # deadlock between two batches that upsert the same channels in opposite orders).
    return [HealthRow(ch, t, *s) for (ch, t), s in sorted(state.items())]


HOUR = 3600  # seconds
KEEP_HOURS = 48  # hour rows older than this are removed (the rate reads 24)


def hour_rows(done: Sequence[Completion], now: float) -> list[tuple[int, int, int, int]]:
    """(channel id, hour, succeeded, failed) of a batch's ended deliveries, one row per
    channel: what ``channel_health_hours`` adds up."""
    hour = int(now // HOUR)
    counts: dict[int, list[int]] = {}
    for c in done:
        if c.status == "pending":
            continue
        pair = counts.setdefault(c.channel_id, [0, 0])
        pair[0 if c.status == "succeeded" else 1] += 1
    return [(channel, hour, ok, bad) for channel, (ok, bad) in sorted(counts.items())]


def to_check(done: Sequence[Completion]) -> dict[int, AutoDisable]:
    """Channels with a failure in the batch whose thresholds may now be reached."""
    out = {}
    for c in done:
        if c.status == "failed" and c.auto_disable is not None:
            out[c.channel_id] = c.auto_disable
    return dict(sorted(out.items()))  # one lock order (see health_rows)


def override_pairs(
    claimed: Sequence[Claimed], channels: Mapping[int, Mapping[str, Any]]
) -> set[tuple[int, int]]:
    """The (channel id, project id) overrides a claim reads: those that are part of how
    each delivery's project sees its channel (``domain.inheritance.override_applies``,
    the rule ``services/channel_view.py: as_seen_by`` applies)."""
    pairs = set()
    for c in claimed:
        row = channels.get(c.channel_id)
        if row is None or c.project_id is None:
            continue
        if override_applies(row["project_id"], c.project_id):
            pairs.add((c.channel_id, c.project_id))
    return pairs


def choose(
    candidates: Sequence[Any],
    *,
    limit: int,
    channel_of: int,
    channel_cap: int | None,
    channel_room: Mapping[int, int] | None,
) -> tuple[list[Any], bool, bool]:
    """The candidates a claim leases: at most each channel's room, in the given order.

    ``channel_of`` is the position of the channel id in a candidate row. Returns the chosen
    rows, whether the claim is full (it took its whole limit: more may be due) and whether
    due rows were left for lack of room.
    """
    room = channel_room or {}
    cap = limit if channel_cap is None else channel_cap
    taken: Counter[int] = Counter()
    chosen = []
    for row in candidates:
        channel = row[channel_of]
        if taken[channel] < room.get(channel, cap):
            taken[channel] += 1
            chosen.append(row)
    left = len(chosen) < len(candidates)
    full = len(candidates) >= limit and not left
    return chosen, full, left


def queue_for(settings: Settings) -> WorkQueue:
    """The queue of ``settings.database_url``, not yet opened."""
    if settings.is_sqlite:
        from loadbell.store.db import sqlite_path
        from loadbell.store.queue.sqlite import SQLiteQueue

        return SQLiteQueue(
            sqlite_path(settings.database_url), synchronous=settings.sqlite_synchronous
        )
    from sqlalchemy.engine import make_url

    from loadbell.store.queue.postgres import PostgresQueue

    url = make_url(settings.database_url).set(drivername="postgresql")
    return PostgresQueue(url.render_as_string(hide_password=False))
