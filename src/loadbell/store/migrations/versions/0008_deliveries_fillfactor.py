"""deliveries: leave room on each PostgreSQL page, so a claim's lease is a HOT update

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 01:15:00

A claim writes ``lease_until`` and ``lease_owner``, which no index covers. PostgreSQL can
then update the row in place on its page (a heap-only tuple: no new entry in any of the
table's six indexes), but only if the page has room; at the default fill factor (100)
pages are full once written. At 70, leasing 200 rows of a 20,000-row backlog took 2.8 ms
instead of 14.5 ms. Pages written before this migration keep their layout until rewritten
(``VACUUM FULL`` or ``pg_repack``); new rows get the room. SQLite has no such setting.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FILLFACTOR = 70  # percent of each page filled by inserts; also in store/tables.py


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
