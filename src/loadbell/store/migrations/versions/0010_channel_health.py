"""channel health, auto-disable, skipped deliveries with a reason

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 01:45:00
"""

import sqlalchemy as sa
from alembic import op

# Human-readable kinds subscribe to channel.disabled by default: channels of those kinds
# made before this revision get it added, so an upgraded instance tells its chats too.
HUMAN_READABLE = (
    "slack",
    "slack_app",
    "hipchat",
    "teams",
    "discord",
    "mattermost",
    "email",
    "apprise",
)

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_health",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.Float(), nullable=True),
        sa.Column("last_success_at", sa.Float(), nullable=True),
        sa.Column("last_failure_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_channel_health_channel_id_channels")
        ),
        sa.PrimaryKeyConstraint("channel_id", "target", name=op.f("pk_channel_health")),
    )
    op.create_table(
        "channel_health_hours",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_channel_health_hours_channel_id_channels"),
        ),
        sa.PrimaryKeyConstraint("channel_id", "hour", name=op.f("pk_channel_health_hours")),
    )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("disabled_announced_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
    _subscribe_human_readable()


def _subscribe_human_readable() -> None:
    channels = sa.table(
        "channels", sa.column("id", sa.Integer), sa.column("kind"), sa.column("events", sa.JSON)
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(channels.c.id, channels.c.events).where(channels.c.kind.in_(HUMAN_READABLE))
    ).all()
    for channel_id, events in rows:
        if isinstance(events, list) and "channel.disabled" not in events:
            bind.execute(
                sa.update(channels)
                .where(channels.c.id == channel_id)
                .values(events=[*events, "channel.disabled"])
            )


def downgrade() -> None:
    # The health tables first: they refer to channels. The columns go with a plain ALTER
    # TABLE ... DROP COLUMN (SQLite 3.35+): batch mode would re-create channels, and
    # dropping the old table fails its foreign keys while deliveries refer to it.
    op.drop_table("channel_health_hours")
    op.drop_table("channel_health")
    for table, column in (
        ("deliveries", "reason"),
        ("channels", "disabled_announced_at"),
        ("channels", "disabled_reason"),
        ("channels", "disabled_at"),
    ):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            op.drop_column(table, column)
