"""The delivery queue's statements on PostgreSQL, one constant each, as
``postgres.py`` runs them (its docstring says why a claim and a common result write are
one statement each, D69).

Results are written set-based: one ``INSERT ... SELECT FROM unnest(...)`` for the attempt
rows and one ``UPDATE ... FROM unnest(...)`` for the deliveries, not a statement per row.
PostgreSQL runs on the same cores as the worker here, and its per-statement work was most
of a result write's cost.

asyncpg prepares each statement once per connection. List parameters are arrays
(``= ANY($n::integer[])``, ``unnest($n::text[])``), so each statement is prepared once
whatever the list's length.
"""

from __future__ import annotations

import re

from loadbell.store.outbox import NOTIFY_CHANNEL
from loadbell.store.queue import (
    CHANNEL_COLUMNS,
    CLAIMED_COLUMNS,
    OVERRIDE_COLUMNS,
    Claimed,
    select_list,
)

_CLAIMED = select_list(CLAIMED_COLUMNS, Claimed._fields)


def _claim(dead: bool, exclude: bool) -> str:
    """The claim, one statement: due deliveries that may go out now, oldest first, with
    their events (per channel x run x target only the oldest pending one), locked and
    passed over where another transaction holds them; of those, at most each channel's
    room, leased; and the channel (and override) rows rendering needs.

    Parameters: now, limit, lease until, owner, the room's channel ids and counts (arrays),
    the cap of a channel not in them[, dead owners][, channel ids to skip]. Rows: one per
    leased delivery in claim order (Claimed's fields but the lease, ``taken_over``, then
    the channel's columns on the first row of each channel and the override's on the first
    row of each channel x project, NULL elsewhere), each with the counts of candidates and
    of leased rows; one row of NULLs with the counts when nothing was leased.
    """
    extra = 8
    dead_sql = exclude_sql = ""
    if dead:
        dead_sql, extra = f"OR d.lease_owner = ANY(${extra}::text[])", extra + 1
    if exclude:
        exclude_sql = f"AND NOT (d.channel_id = ANY(${extra}::integer[]))"
    channel = ", ".join(f"ch.{c} AS ch_{c}" for c in CHANNEL_COLUMNS)
    override = ", ".join(f"o.{c} AS o_{c}" for c in OVERRIDE_COLUMNS)
    # MATERIALIZED: the candidates are locked once, whatever reads them. taken_over: whether
    # the row was leased before (a claim over an expired lease, or over a lapsed worker's),
    # read under the row lock. The choice is choose()'s: a row is kept when fewer than its
    # channel's room of that channel's rows come before it. The lease is by id (= ANY of
    # an array: a join back to the table was planned as a hash join over all of it). When
    # candidates are left beside leased ones, NOTIFY (at commit): other workers may have
    # found them locked. A claim that leased nothing stays silent: listening workers would
    # otherwise wake each other (and themselves) in turn for rows no one has room for.
    return f"""
WITH due AS MATERIALIZED (
    SELECT {_CLAIMED}, d.next_attempt_at, d.lease_until IS NOT NULL AS taken_over
    FROM deliveries d JOIN events e ON e.id = d.event_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= $1
      AND (d.lease_until IS NULL OR d.lease_until < $1 {dead_sql})
      AND (d.order_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM deliveries p
            WHERE p.order_key = d.order_key AND p.status = 'pending' AND p.id < d.id))
      {exclude_sql}
    ORDER BY d.next_attempt_at, d.id
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
), ranked AS (
    SELECT due.*,
        row_number() OVER (PARTITION BY channel_id ORDER BY next_attempt_at, id) AS nth,
        row_number() OVER (PARTITION BY channel_id, project_id
                           ORDER BY next_attempt_at, id) AS nth_of_project
    FROM due
), chosen AS (
    SELECT r.* FROM ranked r
    LEFT JOIN unnest($5::integer[], $6::integer[]) AS room(channel_id, n)
        ON room.channel_id = r.channel_id
    WHERE r.nth <= coalesce(room.n, $7)
), leased AS (
    UPDATE deliveries SET lease_until = $3, lease_owner = $4
    WHERE id = ANY(ARRAY(SELECT id FROM chosen))
), counts AS MATERIALIZED (
    SELECT n.*, CASE WHEN n.leased > 0 AND n.leased < n.candidates
        THEN pg_notify('{NOTIFY_CHANNEL}', '') IS NULL END AS shared
    FROM (SELECT (SELECT count(*) FROM due) AS candidates,
                 (SELECT count(*) FROM chosen) AS leased) AS n
)
SELECT {", ".join(f"c.{f}" for f in Claimed._fields[:-1])}, c.taken_over,
    counts.candidates, counts.leased, {channel}, {override}
FROM counts
LEFT JOIN chosen c ON true
LEFT JOIN channels ch ON c.nth = 1 AND ch.id = c.channel_id
LEFT JOIN channel_overrides o ON c.nth_of_project = 1
    AND o.channel_id = c.channel_id AND o.project_id = c.project_id
ORDER BY c.next_attempt_at, c.id
"""


# Sent (at commit) by a result write after which a waiting delivery of an ordered sequence
# may go (and by a claim that locked due rows it did not keep, in its statement): other
# workers may have found those rows locked, or not due, and would otherwise wait for their
# next poll.
SHARE = f"NOTIFY {NOTIFY_CHANNEL}"

CLAIM = {
    (dead, exclude): _claim(dead, exclude) for dead in (False, True) for exclude in (False, True)
}
# Where each part of a claim's row is (CLAIM's docstring).
TAKEN_OVER = len(Claimed._fields) - 1
CANDIDATES, LEASED = TAKEN_OVER + 1, TAKEN_OVER + 2
CHANNEL_PART = slice(LEASED + 1, LEASED + 1 + len(CHANNEL_COLUMNS))
OVERRIDE_PART = slice(CHANNEL_PART.stop, CHANNEL_PART.stop + len(OVERRIDE_COLUMNS))
# A batch's results are one array of ``attempt_result`` (migration 0016), a row per result:
# the attempt row's columns, then the delivery's new status and next attempt at and the
# claim's lease until (ATTEMPT_RESULT_FIELDS). asyncpg checks each element of an array
# before encoding it, so one array of rows costs a check per row where an array per column
# cost one per column and row, and the attempt number, error and status code the update
# shares with the attempt row go once (docs/decisions.md, D80).
#
# COMPLETE's parameters: the results, their delivery ids, then updated at. ``d.id =
# ANY($2)`` keeps the plan on the primary key (a hash join over the whole table looked
# cheaper to the planner on a small table, and cost 10 ms at 20,000 rows).
#
# The same statement answers whether a delivery this write ended (a row it updated, so
# under its claim's lease) had a follower: a pending delivery of the same order key, which
# may go now. The updated rows are not visible to the outer query, so a follower is a
# pending row with a greater id than the ended one (order is by id). A separate query
# after the update was one more round trip and statement per batch.
_DONE = """done AS (
    UPDATE deliveries AS d SET status = u.status, attempts = u.number,
        next_attempt_at = u.next_attempt_at, lease_until = NULL, lease_owner = NULL,
        last_error = u.error, last_status_code = u.response_status, updated_at = $3
    FROM unnest($1::attempt_result[]) AS u
    WHERE d.id = ANY($2::integer[])
      AND d.id = u.delivery_id AND d.series = u.series AND d.lease_until = u.lease_until
    RETURNING d.id, d.order_key, d.status
)"""
_FOLLOWER = """EXISTS (
    SELECT 1 FROM done JOIN deliveries p ON p.order_key = done.order_key
    WHERE done.status <> 'pending' AND p.status = 'pending' AND p.id > done.id)"""
_FOLLOWS = f"\nSELECT {_FOLLOWER}\n"
COMPLETE = f"WITH {_DONE}{_FOLLOWS}"
# The attempt rows of a batch (its results, as COMPLETE takes them), then the worker. A row
# that exists already (the batch is written again, or another worker made the same attempt)
# is left to INSERT_ATTEMPT below, row by row: returned rows are the new ones.
INSERT_ATTEMPTS = """
INSERT INTO delivery_attempts (delivery_id, series, number, started_at, duration_ms, outcome,
    request_url, request_headers, response_status, response_body, error, request_body,
    request_body_bytes, response_headers, worker)
SELECT u.delivery_id, u.series, u.number, u.started_at, u.duration_ms, u.outcome,
    u.request_url, u.request_headers::json, u.response_status, u.response_body, u.error,
    u.request_body, u.request_body_bytes, u.response_headers::json, $2
FROM unnest($1::attempt_result[]) AS u
ON CONFLICT (delivery_id, series, number) DO NOTHING
RETURNING delivery_id, series, number
"""
# One attempt is one row (uq_delivery_attempts_number), however often a batch is written.
# When two workers made the same attempt (one after losing its lease), the row is the one
# whose claim still holds: its result is the delivery's. Written before the delivery's
# update, which clears the lease. Parameters: the row, then the claim's lease until.
INSERT_ATTEMPT = """
INSERT INTO delivery_attempts (delivery_id, series, number, started_at, duration_ms, outcome,
    request_url, request_headers, response_status, response_body, error, request_body,
    request_body_bytes, response_headers, worker)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (delivery_id, series, number) DO UPDATE SET
    started_at = EXCLUDED.started_at, duration_ms = EXCLUDED.duration_ms,
    outcome = EXCLUDED.outcome, request_url = EXCLUDED.request_url,
    request_headers = EXCLUDED.request_headers,
    response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
    error = EXCLUDED.error, request_body = EXCLUDED.request_body,
    request_body_bytes = EXCLUDED.request_body_bytes,
    response_headers = EXCLUDED.response_headers, worker = EXCLUDED.worker
WHERE EXISTS (
    SELECT 1 FROM deliveries d
    WHERE d.id = EXCLUDED.delivery_id AND d.series = EXCLUDED.series AND d.lease_until = $16)
"""
# due; id, series, lease until
DEFER = """
UPDATE deliveries SET next_attempt_at = $1, lease_until = NULL, lease_owner = NULL
WHERE id = $2 AND series = $3 AND lease_until = $4
"""
# After a write that disabled a channel (its pending deliveries were skipped with it):
# whether a delivery of the ended ones' order keys is still pending.
FOLLOWER = """
SELECT 1 FROM deliveries WHERE order_key = ANY($1::text[]) AND status = 'pending' LIMIT 1
"""
# One row per channel (target '') and target a batch of results ended deliveries of; a
# success in the batch (last_success_at set) resets the count. Parameters: HealthRow.
HEALTH = """
INSERT INTO channel_health (channel_id, target, consecutive_failures, first_failure_at,
    last_success_at, last_failure_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (channel_id, target) DO UPDATE SET
    consecutive_failures = CASE WHEN EXCLUDED.last_success_at IS NOT NULL
        THEN EXCLUDED.consecutive_failures
        ELSE channel_health.consecutive_failures + EXCLUDED.consecutive_failures END,
    first_failure_at = CASE WHEN EXCLUDED.last_success_at IS NOT NULL
        THEN EXCLUDED.first_failure_at
        ELSE coalesce(channel_health.first_failure_at, EXCLUDED.first_failure_at) END,
    last_success_at = coalesce(EXCLUDED.last_success_at, channel_health.last_success_at),
    last_failure_at = coalesce(EXCLUDED.last_failure_at, channel_health.last_failure_at)
"""
HOURS = """
INSERT INTO channel_health_hours (channel_id, hour, succeeded, failed) VALUES ($1, $2, $3, $4)
ON CONFLICT (channel_id, hour) DO UPDATE SET
    succeeded = channel_health_hours.succeeded + EXCLUDED.succeeded,
    failed = channel_health_hours.failed + EXCLUDED.failed
"""
# COMPLETE with the batch's health and hourly counts (HEALTH and HOURS, their rows as
# arrays from $4 on) in the same statement: two round trips fewer per result write, which
# at a few deliveries per batch (an API-paced load) is a third of the write's. Each key
# comes once per batch, sorted, so no row is upserted twice and concurrent writers lock
# the rows in one order (health_rows). The data-modifying WITHs run whatever the outer
# query reads; HEALTH_OF, a later statement, sees what they wrote.
_HEALTH_ROWS = """SELECT * FROM unnest($4::integer[], $5::text[], $6::integer[],
    $7::float8[], $8::float8[], $9::float8[])"""
_HOURS_ROWS = "SELECT * FROM unnest($10::integer[], $11::integer[], $12::integer[], $13::integer[])"
COMPLETE_WITH_HEALTH = (
    f"WITH health AS ({HEALTH.replace('VALUES ($1, $2, $3, $4, $5, $6)', _HEALTH_ROWS)}), "
    f"hours AS ({HOURS.replace('VALUES ($1, $2, $3, $4)', _HOURS_ROWS)}), {_DONE}{_FOLLOWS}"
)
FORGET_HOURS = "DELETE FROM channel_health_hours WHERE hour < $1"


def _after_worker(sql: str) -> str:
    """``sql``, which takes the results as $1, with its other parameters one later: $2
    onwards become $3 onwards, for the worker's name to go in $2 as INSERT_ATTEMPTS has it."""
    return re.sub(r"\$(\d+)", lambda m: m[0] if m[1] == "1" else f"${int(m[1]) + 1}", sql)


def _write(with_health: bool) -> str:
    """The common result write, one statement: INSERT_ATTEMPTS, then COMPLETE (or
    COMPLETE_WITH_HEALTH), and NOTIFY when a follower may go. The rest applies only if
    every attempt row was new (``fits``); otherwise only the new rows are written, and the
    caller writes the batch again in a transaction, through INSERT_ATTEMPT's fenced upsert
    (the lease that fences it is cleared by COMPLETE, so that must come after it).

    Parameters: INSERT_ATTEMPTS's (the results, the worker), then COMPLETE's or
    COMPLETE_WITH_HEALTH's but the results, from $3. One row: whether it all applied,
    whether a follower may go (then NOTIFY was sent).
    """
    fits = "(SELECT ok FROM fits)"
    done = _DONE.replace("WHERE d.id = ANY", f"WHERE {fits} AND d.id = ANY")
    parts = [
        f"attempts AS ({INSERT_ATTEMPTS})",
        "fits AS MATERIALIZED (SELECT count(*) = cardinality($1::attempt_result[]) AS ok "
        "FROM attempts)",
    ]
    if with_health:
        rows = f"{_HEALTH_ROWS} AS h WHERE {fits}"
        parts.append(f"health AS ({HEALTH.replace('VALUES ($1, $2, $3, $4, $5, $6)', rows)})")
        rows = f"{_HOURS_ROWS} AS h WHERE {fits}"
        parts.append(f"hours AS ({HOURS.replace('VALUES ($1, $2, $3, $4)', rows)})")
    parts.append(done)
    rest = ", ".join(_after_worker(p) for p in parts[2:])
    return (
        f"WITH {parts[0]}, {parts[1]}, {rest}\n"
        f"SELECT {fits} AS written, f.followers, "
        f"CASE WHEN f.followers THEN pg_notify('{NOTIFY_CHANNEL}', '') IS NULL END "
        f"FROM (SELECT {_FOLLOWER} AS followers) AS f"
    )


WRITE = {with_health: _write(with_health) for with_health in (False, True)}
# The counts of every channel a batch's failures may disable, in one round trip.
HEALTH_OF = """
SELECT channel_id, consecutive_failures, first_failure_at FROM channel_health
WHERE channel_id = ANY($1::int[]) AND target = ''
"""
DISABLE = """
UPDATE channels SET enabled = false, disabled_at = $2, disabled_reason = $3
WHERE id = $1 AND disabled_at IS NULL AND deleted_at IS NULL
RETURNING id
"""
# A disabled channel's pending deliveries end skipped (leased ones too: a result of an
# attempt under way is then fenced out and only logged), and so do its held ones.
SKIP_PENDING = """
UPDATE deliveries SET status = 'skipped', reason = $3, lease_until = NULL,
    lease_owner = NULL, updated_at = $2
WHERE channel_id = $1 AND status IN ('pending', 'held')
"""
# Held deliveries whose quiet hours ended (ix_deliveries_held): pending, due at once. The
# status is written out, so the partial index applies. Parameters: now, due, updated at.
RELEASE = """
UPDATE deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $3
WHERE status = 'held' AND next_attempt_at <= $1
"""
HEARTBEAT = """
INSERT INTO workers (name, started_at, alive_until) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET alive_until = EXCLUDED.alive_until
"""
# A lapsed row that another transaction holds is being written by its worker's heartbeat,
# back after an outage: passed over, not waited for. Waiting deadlocked two workers back
# after an outage longer than the lease, each heartbeat holding its own row and deleting
# the other's.
FORGET = """
DELETE FROM workers WHERE name IN (
    SELECT name FROM workers WHERE alive_until < $1 FOR UPDATE SKIP LOCKED)
"""
LAPSED = "SELECT name FROM workers WHERE alive_until < $1"
LEAVE = "DELETE FROM workers WHERE name = $1"
