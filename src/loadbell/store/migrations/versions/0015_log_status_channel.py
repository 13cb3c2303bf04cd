"""the channel in the delivery log's status index, for the failed count of a page

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 08:00:00

The log page says how many failed deliveries "Redeliver all failed" would send
(``redelivery.count_failed``): the organization's failures of its live channels. With the
channel outside ``ix_deliveries_log_status``, PostgreSQL read every failure's row to check
it (26,000 heap pages, 370-500 ms for the 60,000 failures of a 500,000-delivery
organization); with the channel at the end of the index the count is an index-only scan.
The order of the leading columns is unchanged, so the log's keyset pages read it as before.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NAME = "ix_deliveries_log_status"
BEFORE = ["organization_id", "status", "id", "event_type"]
AFTER = [*BEFORE, "channel_id"]


def _remake(columns: list[str]) -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(NAME)
        batch_op.create_index(NAME, columns, unique=False)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA analysis_limit=1000")  # as 0007: a sample per index is enough
    op.execute("ANALYZE deliveries")


def upgrade() -> None:
    _remake(AFTER)


def downgrade() -> None:
    _remake(BEFORE)
