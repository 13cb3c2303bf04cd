"""noise control: held deliveries found by their release time, a load test's finished runs
in end order (notify_on)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 04:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The worker's release step (held deliveries whose quiet hours ended): a range of this
    # small partial index, empty most of the time.
    op.create_index(
        "ix_deliveries_held",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        sqlite_where=sa.text("status = 'held'"),
        postgresql_where=sa.text("status = 'held'"),
    )
    # notify_on reads a load test's previous finished runs, newest first.
    op.create_index(
        "ix_runs_ended",
        "runs",
        ["load_test_id", "ended_at", "id"],
        unique=False,
        sqlite_where=sa.text("ended_at IS NOT NULL"),
        postgresql_where=sa.text("ended_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_ended", table_name="runs")
    op.drop_index("ix_deliveries_held", table_name="deliveries")
