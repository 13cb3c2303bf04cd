"""slack install states (OAuth v2 state for the slack_app kind)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_install_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_slack_install_states_channel_id_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_slack_install_states_project_id_projects"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_slack_install_states_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_install_states")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_slack_install_states_state_hash")),
    )
    with op.batch_alter_table("slack_install_states", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_slack_install_states_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("slack_install_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slack_install_states_expires_at"))
    op.drop_table("slack_install_states")
