"""Idempotency keys: the rows that make a repeated ``POST /runs`` return the first run.

A key is claimed in the transaction that creates the run, before anything else is written,
with ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (organization, key):

- On SQLite, ``BEGIN IMMEDIATE`` serialises writers, so a second request with the key
  finds the first one's row.
- On PostgreSQL, a second transaction's insert waits on the unique index until the first
  one ends. If the first commits, the insert does nothing and the row it then reads is the
  first one's, with its run; if the first rolls back, the second claims the key itself.

Either way two requests with one key make one run, and the one that lost creates nothing,
not even the load test a ``load_test_name`` would have created.

Keys live 24 h. Expired rows go when a key is claimed: the claimed key's own expired row,
and up to :data:`SWEEP` others (oldest first; on PostgreSQL skipping rows another
transaction holds, so claims never wait for each other's sweeps). Each claim adds one row
and can remove many, so the table holds about a day of keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.tables import idempotency_keys

KEY_TTL = 24 * 3600.0  # seconds a key keeps its run
SWEEP = 100  # most expired rows one claim deletes besides its own

_t = idempotency_keys


@dataclass(frozen=True)
class Claimed:
    """The key is this request's: create the run, then :func:`attach` it."""

    key_id: int


@dataclass(frozen=True)
class Taken:
    """An earlier request (committed) holds the key."""

    request_hash: str
    run_id: int


async def claim(
    conn: AsyncConnection, organization_id: int, key: str, request_hash: str, now: float
) -> Claimed | Taken:
    """Claim ``key`` for a request whose fingerprint is ``request_hash``, or say who has it."""
    await conn.execute(
        sa.delete(_t).where(
            _t.c.organization_id == organization_id, _t.c.key == key, _t.c.expires_at < now
        )
    )
    await _sweep(conn, now)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    key_id = (
        await conn.execute(
            dialect.insert(_t)
            .values(
                organization_id=organization_id,
                key=key,
                request_hash=request_hash,
                expires_at=now + KEY_TTL,
            )
            .on_conflict_do_nothing(index_elements=["organization_id", "key"])
            .returning(_t.c.id)
        )
    ).scalar_one_or_none()
    if key_id is not None:
        return Claimed(int(key_id))
    row = (
        await conn.execute(
            sa.select(_t.c.request_hash, _t.c.run_id).where(
                _t.c.organization_id == organization_id, _t.c.key == key
            )
        )
    ).one()
    # run_id is set before the claiming transaction commits, and only a committed row
    # stops the insert above.
    assert row.run_id is not None, f"idempotency key {key!r} committed without its run"
    return Taken(row.request_hash, int(row.run_id))


async def attach(conn: AsyncConnection, claimed: Claimed, run_id: int) -> None:
    """Record the run made under a key claimed in this transaction."""
    await conn.execute(sa.update(_t).where(_t.c.id == claimed.key_id).values(run_id=run_id))


async def _sweep(conn: AsyncConnection, now: float) -> None:
    expired = sa.select(_t.c.id).where(_t.c.expires_at < now).order_by(_t.c.expires_at).limit(SWEEP)
    if conn.dialect.name == "postgresql":
        expired = expired.with_for_update(skip_locked=True)
    await conn.execute(sa.delete(_t).where(_t.c.id.in_(expired)))
