"""the attempt log keeps the request body sent and the response headers

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Attempts made before this revision keep NULL in all three: they were not recorded.
COLUMNS = (
    ("request_body", sa.Text()),
    ("request_body_bytes", sa.Integer()),
    ("response_headers", sa.JSON()),
)


def upgrade() -> None:
    # Plain ADD COLUMN, nullable and without a default: no table rewrite on either
    # database, however many attempts there are.
    for name, type_ in COLUMNS:
        op.add_column("delivery_attempts", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): batch mode would re-create the table.
    for name, _ in reversed(COLUMNS):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE delivery_attempts DROP COLUMN {name}")
        else:
            op.drop_column("delivery_attempts", name)
