"""workers (liveness rows) and one attempt row per (delivery, series, number)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alive_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )
    # A result batch written twice (the second of two transactions failed) logged the same
    # attempt twice: keep the first row of each before the key makes that impossible.
    op.execute(
        "DELETE FROM delivery_attempts WHERE id NOT IN ("
        "SELECT min(id) FROM delivery_attempts GROUP BY delivery_id, series, number)"
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        # The unique key starts with delivery_id, so it also serves the old index's lookups.
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_delivery_id"))
        batch_op.create_index(
            "uq_delivery_attempts_number", ["delivery_id", "series", "number"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index("uq_delivery_attempts_number")
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_delivery_id"), ["delivery_id"], unique=False
        )
    op.drop_table("workers")
