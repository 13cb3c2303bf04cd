"""baselines and regressions: a load test's pinned baseline run and tolerances, a run's
comparison with its baseline

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 01:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("load_tests", schema=None) as batch_op:
        # No foreign key: runs already point at load_tests, and a pinned run that is gone
        # reads as no pin (the latest passed run is the baseline again).
        batch_op.add_column(sa.Column("baseline_run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("regression", sa.JSON(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("comparison", sa.JSON(), nullable=True))
        # The default baseline: a load test's latest passed run.
        batch_op.create_index(
            "ix_runs_passed",
            ["load_test_id", "ended_at", "id"],
            unique=False,
            sqlite_where=sa.text("result = 'passed'"),
            postgresql_where=sa.text("result = 'passed'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_passed")
        batch_op.drop_column("comparison")
    with op.batch_alter_table("load_tests", schema=None) as batch_op:
        batch_op.drop_column("regression")
        batch_op.drop_column("baseline_run_id")
