"""a row type for the PostgreSQL worker's result write

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 16:00:00

The worker writes a batch of results as one statement (store/queue/postgres.py). Its rows
went as one array per column, 22 of them, and asyncpg checks every element of an array
against ``collections.abc`` before encoding it: at a few hundred results per batch that was
most of the worker's CPU for the write. One array of this type is checked once per row,
and carries the attempt row and the delivery's new state together, where five columns
were sent twice (docs/decisions.md, D80). SQLite has no row types and needs none: its
driver takes the rows as they are.
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Keep in step with ATTEMPT_RESULT_FIELDS in store/queue/__init__.py.
FIELDS = """
    delivery_id integer,
    series integer,
    number integer,
    started_at timestamptz,
    duration_ms double precision,
    outcome text,
    request_url text,
    request_headers text,
    response_status integer,
    response_body text,
    error text,
    request_body text,
    request_body_bytes integer,
    response_headers text,
    status text,
    next_attempt_at double precision,
    lease_until double precision
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TYPE attempt_result AS ({FIELDS})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TYPE attempt_result")
