"""inbound sources (Grafana Cloud k6 webhooks in) and the runs they made

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 04:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_inbound_sources_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_inbound_sources_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_inbound_sources_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_sources")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_inbound_sources_token_hash")),
    )
    op.create_index(
        op.f("ix_inbound_sources_project_id"), "inbound_sources", ["project_id"], unique=False
    )
    op.create_table(
        "inbound_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("external_load_test_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("load_test_url", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["inbound_sources.id"],
            name=op.f("fk_inbound_runs_source_id_inbound_sources"),
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_inbound_runs_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_runs")),
        sa.UniqueConstraint("source_id", "external_id", name="uq_inbound_runs_source_external"),
    )
    op.create_index(op.f("ix_inbound_runs_run_id"), "inbound_runs", ["run_id"], unique=False)
    op.create_index(
        "ix_inbound_runs_load_test",
        "inbound_runs",
        ["source_id", "external_load_test_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("inbound_runs")
    op.drop_table("inbound_sources")
