"""the delivery log's columns and indexes (organization, event type, run on deliveries)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 01:00:00

The columns are copies of the event's and the channel's values, filled here for the rows
that exist. Then ANALYZE, as SQLite recommends after adding indexes: the planner chooses
between the new indexes by their statistics.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (name, columns) of the indexes this revision adds; ix_deliveries_channel_id is re-made
# with id, so that PostgreSQL can read a channel's deliveries in id order from it.
LOG_INDEXES = [
    ("ix_deliveries_run_id", ["run_id", "id"]),
    ("ix_deliveries_log", ["organization_id", "id"]),
    # with the event type after id: a page filtered by both checks it in the index
    ("ix_deliveries_log_status", ["organization_id", "status", "id", "event_type"]),
    ("ix_deliveries_log_event_type", ["organization_id", "event_type", "id"]),
]


def upgrade() -> None:
    # Plain ADD COLUMN (no table copy on SQLite): nullable, no default.
    op.add_column("deliveries", sa.Column("organization_id", sa.Integer(), nullable=True))
    op.add_column("deliveries", sa.Column("event_type", sa.String(length=64), nullable=True))
    op.add_column("deliveries", sa.Column("run_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE deliveries SET organization_id = events.organization_id,"
            " event_type = events.type, run_id = events.run_id"
            " FROM events WHERE events.id = deliveries.event_id"
        )
    else:  # one look-up of the event per row (row values: SQLite 3.15 and later)
        op.execute(
            "UPDATE deliveries SET (organization_id, event_type, run_id) ="
            " (SELECT events.organization_id, events.type, events.run_id FROM events"
            " WHERE events.id = deliveries.event_id)"
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_channel_id")
        batch_op.create_index("ix_deliveries_channel_id", ["channel_id", "id"], unique=False)
        for name, columns in LOG_INDEXES:
            batch_op.create_index(name, columns, unique=False)
    if op.get_bind().dialect.name == "sqlite":
        # A sample per index is enough for the planner and keeps this quick on a large log.
        op.execute("PRAGMA analysis_limit=1000")
    op.execute("ANALYZE deliveries")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name, _columns in reversed(LOG_INDEXES):
            batch_op.drop_index(name)
        batch_op.drop_index("ix_deliveries_channel_id")
        batch_op.create_index("ix_deliveries_channel_id", ["channel_id"], unique=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("run_id")
        batch_op.drop_column("event_type")
        batch_op.drop_column("organization_id")
