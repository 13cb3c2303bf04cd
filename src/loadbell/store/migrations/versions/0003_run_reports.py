"""run reports and threshold failures (live reports from k6, Locust and generic commands)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_reports_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_reports")),
    )
    with op.batch_alter_table("run_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_reports_run_id"), ["run_id"], unique=False)

    op.create_table(
        "run_threshold_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=255), nullable=False),
        sa.Column("expression", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_threshold_failures_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_threshold_failures")),
        sa.UniqueConstraint(
            "run_id",
            "metric",
            "expression",
            name="uq_run_threshold_failures_run_metric_expression",
        ),
    )


def downgrade() -> None:
    op.drop_table("run_threshold_failures")
    with op.batch_alter_table("run_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_reports_run_id"))
    op.drop_table("run_reports")
