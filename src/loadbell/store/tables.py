"""Table definitions (SQLAlchemy Core). Migrations in ``store/migrations`` must match these.

Scheduling columns (``next_attempt_at``, ``lease_until``) are float epoch seconds: the claim
query compares them on every poll, and plain numbers compare the same way on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, on every backend.

    SQLite keeps no zone, so values would come back naive; PostgreSQL keeps it. Either way
    the API shows ``...+00:00``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


TS = UTCDateTime()

# The largest id the id columns hold on every database (INTEGER: 64-bit on SQLite, 32-bit on
# PostgreSQL). The API accepts no id above it.
MAX_ID = 2**31 - 1


def _now() -> sa.ColumnElement[datetime]:
    return sa.func.current_timestamp()


organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), unique=True),
    sa.Column("password_hash", sa.String(200)),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.UniqueConstraint("organization_id", "user_id", name="uq_memberships_org_user"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    # NULL: the token acts on every organization its user belongs to.
    sa.Column("organization_id", sa.ForeignKey("organizations.id")),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("revoked_at", TS),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.Column("deleted_at", TS),
)

load_tests = sa.Table(
    "load_tests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.Column("deleted_at", TS),
    # The run pinned as baseline; NULL: the latest passed run (no FK, see migration 0009).
    sa.Column("baseline_run_id", sa.Integer),
    sa.Column("regression", sa.JSON),  # tolerances (domain/regression.py); NULL: defaults
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("load_test_id", sa.ForeignKey("load_tests.id"), nullable=False, index=True),
    sa.Column("project_id", sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("result", sa.String(16)),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.Column("started_at", TS),
    sa.Column("ended_at", TS),
    sa.Column("comparison", sa.JSON),  # with the baseline, once finished (domain/regression.py)
    # A load test's latest passed run, its default baseline, read as every run finishes:
    # one index step instead of a walk over all of the load test's runs.
    sa.Index(
        "ix_runs_passed",
        "load_test_id",
        "ended_at",
        "id",
        sqlite_where=sa.text("result = 'passed'"),
        postgresql_where=sa.text("result = 'passed'"),
    ),
    # A load test's finished runs in end order: notify_on reads the previous ones
    # (store/noise.py).
    sa.Index(
        "ix_runs_ended",
        "load_test_id",
        "ended_at",
        "id",
        sqlite_where=sa.text("ended_at IS NOT NULL"),
        postgresql_where=sa.text("ended_at IS NOT NULL"),
    ),
)

run_status_changes = sa.Table(
    "run_status_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("at", TS, nullable=False, server_default=_now()),
)

channels = sa.Table(
    "channels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False, index=True),
    sa.Column("project_id", sa.ForeignKey("projects.id")),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("config", sa.JSON, nullable=False, default=dict),  # non-secret values
    sa.Column("secrets", sa.Text),  # encrypted JSON of the secret values
    sa.Column("events", sa.JSON, nullable=False, default=list),
    sa.Column("filters", sa.JSON, nullable=False, default=dict),
    sa.Column("retry", sa.JSON, nullable=False, default=dict),  # RetryPolicy overrides
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.Column("deleted_at", TS),
    # Set when the channel was disabled for failing (domain/health.py); ``enabled`` is then
    # false. Cleared when someone enables it again.
    sa.Column("disabled_at", TS),
    sa.Column("disabled_reason", sa.Text),
    # When its channel.disabled event was recorded (delivery/disabling.py); NULL while a
    # disabling still waits for it, so a worker that died in between leaves it for the next.
    sa.Column("disabled_announced_at", TS),
)

# A channel's health: one row per channel (``target = ''``) and one per target of a channel
# that has several (Slack). Written by the worker in the transaction of each results batch
# (store/queue): one upsert per channel and target in the batch. Times are epoch seconds.
channel_health = sa.Table(
    "channel_health",
    metadata,
    sa.Column("channel_id", sa.ForeignKey("channels.id"), primary_key=True),
    sa.Column("target", sa.String(200), primary_key=True),  # '': the channel as a whole
    sa.Column("consecutive_failures", sa.Integer, nullable=False, default=0),
    sa.Column("first_failure_at", sa.Float),  # of the current run of failures
    sa.Column("last_success_at", sa.Float),
    sa.Column("last_failure_at", sa.Float),
)

# Deliveries of a channel that ended, per hour (``hour`` = epoch seconds // 3600): what
# ``health.success_rate_24h`` sums, so a channel read does not count its deliveries. Written
# with the health rows; a worker removes rows older than two days once an hour.
channel_health_hours = sa.Table(
    "channel_health_hours",
    metadata,
    sa.Column("channel_id", sa.ForeignKey("channels.id"), primary_key=True),
    sa.Column("hour", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("succeeded", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
)

channel_overrides = sa.Table(
    "channel_overrides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("channel_id", sa.ForeignKey("channels.id"), nullable=False),
    sa.Column("project_id", sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("enabled", sa.Boolean),  # NULL: inherit "send messages"
    sa.Column("config", sa.JSON, nullable=False, default=dict),
    sa.Column("secrets", sa.Text),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("channel_id", "project_id", name="uq_channel_overrides_channel_project"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("project_id", sa.Integer),  # no FK: project events outlive a deleted project
    sa.Column("load_test_id", sa.Integer),
    sa.Column("run_id", sa.Integer, index=True),
    sa.Column("context", sa.JSON, nullable=False),
)

# A mute silences the events it matches until ``until``: each scope it names (the
# organization always; a project, a load test, a channel when set) must match, and the
# deliveries of a matching event end ``suppressed`` with reason "muted" (services/mutes.py).
# The fan-out reads the organization's live mutes for every event: one range of
# ``ix_mutes_active``.
mutes = sa.Table(
    "mutes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("project_id", sa.ForeignKey("projects.id")),
    sa.Column("load_test_id", sa.ForeignKey("load_tests.id")),
    sa.Column("channel_id", sa.ForeignKey("channels.id")),
    sa.Column("until", TS, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("created_by", sa.ForeignKey("users.id"), nullable=False),
    sa.Index("ix_mutes_active", "organization_id", "until"),
)

DELIVERY_PENDING = "pending"
DELIVERY_SUCCEEDED = "succeeded"
DELIVERY_FAILED = "failed"
# Ended without an attempt, for the ``reason`` stored beside it (its channel was disabled
# for failing).
DELIVERY_SKIPPED = "skipped"
# Ended without an attempt by noise control (a mute, quiet hours with "drop", a throttle,
# notify_on); ``reason`` says which.
DELIVERY_SUPPRESSED = "suppressed"
# Waiting for a quiet-hours window to end (``next_attempt_at``); then it becomes pending.
DELIVERY_HELD = "held"


def is_pending(table: sa.FromClause) -> sa.ColumnElement[bool]:
    """``status = 'pending'`` with the value written into the SQL, not bound.

    The due and order indexes of ``deliveries`` are partial (``WHERE status = 'pending'``),
    and a planner can only use them when it sees the value: with a bound parameter SQLite
    scanned the order index instead (8x slower with 20,000 rows), and PostgreSQL's generic
    plans for prepared statements cannot prove the condition either.
    """
    return table.c.status == sa.literal_column(f"'{DELIVERY_PENDING}'")


deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("event_id", sa.ForeignKey("events.id"), nullable=False, index=True),
    sa.Column("channel_id", sa.ForeignKey("channels.id"), nullable=False),
    sa.Column("target", sa.String(200)),
    # Deliveries sharing an order key go out strictly in id order (channel x run x target).
    sa.Column("order_key", sa.String(120)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("series", sa.Integer, nullable=False, default=1),  # bumped by redeliver
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # in the current series
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("last_error", sa.Text),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("reason", sa.Text),  # why it was skipped
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    # Copies of the event's and the channel's values, for the delivery log: its filters and
    # its order (id) then come from one index, and no query sorts or joins the whole log
    # (store/delivery_log.py). Set when the delivery is staged; never change afterwards.
    # Nullable only so that migration 0007 could add them to a large table in place.
    sa.Column("organization_id", sa.Integer),
    sa.Column("event_type", sa.String(64)),
    sa.Column("run_id", sa.Integer),
    sa.Index(
        "ix_deliveries_due",
        "next_attempt_at",
        sqlite_where=sa.text(f"status = '{DELIVERY_PENDING}'"),
        postgresql_where=sa.text(f"status = '{DELIVERY_PENDING}'"),
    ),
    sa.Index(
        "ix_deliveries_order",
        "order_key",
        "id",
        sqlite_where=sa.text(f"status = '{DELIVERY_PENDING}'"),
        postgresql_where=sa.text(f"status = '{DELIVERY_PENDING}'"),
    ),
    # Held deliveries by the end of their quiet hours: the worker's release step
    # (store/queue) reads a range of it each poll, empty most of the time.
    sa.Index(
        "ix_deliveries_held",
        "next_attempt_at",
        sqlite_where=sa.text(f"status = '{DELIVERY_HELD}'"),
        postgresql_where=sa.text(f"status = '{DELIVERY_HELD}'"),
    ),
    # The delivery log's indexes (store/delivery_log.py): the filters, then id, so a page in
    # id order is a range of one index, whichever filter leads it. The status index also
    # holds the event type, so that a page with both checks it without reading the row,
    # and the channel, so that the page's failed count is an index-only scan (0015).
    sa.Index("ix_deliveries_channel_id", "channel_id", "id"),
    sa.Index("ix_deliveries_run_id", "run_id", "id"),
    sa.Index("ix_deliveries_log", "organization_id", "id"),
    sa.Index(
        "ix_deliveries_log_status", "organization_id", "status", "id", "event_type", "channel_id"
    ),
    sa.Index("ix_deliveries_log_event_type", "organization_id", "event_type", "id"),
    # Room on each page, so a claim's lease (no indexed column) is a HOT update (0008).
    postgresql_with={"fillfactor": 70},
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("delivery_id", sa.ForeignKey("deliveries.id"), nullable=False),
    sa.Column("series", sa.Integer, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered | retry | failed
    sa.Column("request_url", sa.Text),
    sa.Column("request_headers", sa.JSON, nullable=False, default=dict),
    sa.Column("response_status", sa.Integer),
    sa.Column("response_body", sa.Text),  # first 4 KiB
    sa.Column("error", sa.Text),
    # The body sent, its first 64 KiB with the channel's secrets masked, and its whole size;
    # the response's headers, masked and bounded (delivery/exchange.py). NULL: not recorded
    # (an attempt before migration 0011, or no response).
    sa.Column("request_body", sa.Text),
    sa.Column("request_body_bytes", sa.Integer),
    sa.Column("response_headers", sa.JSON),
    sa.Column("worker", sa.String(64)),
    # One attempt is one row, however often a batch of results is written (the worker's
    # inserts skip a conflict); it also serves lookups by delivery.
    sa.Index("uq_delivery_attempts_number", "delivery_id", "series", "number", unique=True),
)

# One row per running worker, kept alive by its heartbeat. A claim may take over what a
# worker whose row lapsed had leased, without waiting for the leases (store/queue).
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("alive_until", sa.Float, nullable=False),  # epoch seconds
)

# One row per "set up Slack integration" click. The browser carries only the state (a random
# token; its SHA-256 is stored) to Slack and back, so the state is the callback's credential:
# single use (``used_at``), short-lived (``expires_at``, epoch seconds) and bound to the
# channel, the project (NULL: organization level) and the admin who started it.
slack_install_states = sa.Table(
    "slack_install_states",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("channel_id", sa.ForeignKey("channels.id"), nullable=False),
    sa.Column("project_id", sa.ForeignKey("projects.id")),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),  # oauth.v2.access must repeat it
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("used_at", sa.Float),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
)

# Live snapshots a load-test tool sends while a run is going (the series behind the run
# page's charts). They never change the run's final ``metrics``.
run_reports = sa.Table(
    "run_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
)

# One row per threshold that was reported crossed during a run: the unique key is what
# makes ``test.threshold_failed`` fire once per threshold per run, whoever reports it.
run_threshold_failures = sa.Table(
    "run_threshold_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("metric", sa.String(255), nullable=False),
    sa.Column("expression", sa.String(255), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.UniqueConstraint(
        "run_id", "metric", "expression", name="uq_run_threshold_failures_run_metric_expression"
    ),
)

# One row (id 1): a known value sealed with the secret key when the database was first set
# up, or when ``loadbell keys rotate`` last ran. A process whose key cannot open it refuses
# to start (store/key_check.py), instead of failing every delivery later.
secret_key_check = sa.Table(
    "secret_key_check",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
)

# One row per ``Idempotency-Key`` of ``POST /runs``, kept 24 h (``expires_at``, epoch
# seconds): a repeat of the request with the same key gets the run the first one made. The
# unique key decides between two concurrent requests with one key (store/idempotency.py).
# ``run_id`` is set in the transaction that inserted the row, before it commits.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),  # SHA-256 of what was asked
    sa.Column("run_id", sa.ForeignKey("runs.id")),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.UniqueConstraint("organization_id", "key", name="uq_idempotency_keys_organization_key"),
)

# A project's inbound source: a secret URL another service (Grafana Cloud k6) posts its
# webhooks to. The token is shown once; only its SHA-256 is kept (as for API tokens). Runs it
# makes belong to ``user_id``, who created it. Deleting it sets ``revoked_at``: its runs stay.
inbound_sources = sa.Table(
    "inbound_sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("organization_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("project_id", sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("revoked_at", TS),
)

# Which loadbell run each of the sender's runs became: the unique key makes a start and an
# end of one Grafana run (and every retry of them) one loadbell run. The sender's own links
# are kept here, and in the events' context (``extra.grafana``).
inbound_runs = sa.Table(
    "inbound_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.ForeignKey("inbound_sources.id"), nullable=False),
    sa.Column("external_id", sa.BigInteger, nullable=False),  # Grafana's test.id
    sa.Column("external_load_test_id", sa.BigInteger, nullable=False),  # test.load_test_id
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),  # test.url
    sa.Column("load_test_url", sa.Text, nullable=False),  # test.load_test_url
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("source_id", "external_id", name="uq_inbound_runs_source_external"),
    sa.Index("ix_inbound_runs_load_test", "source_id", "external_load_test_id"),
)
