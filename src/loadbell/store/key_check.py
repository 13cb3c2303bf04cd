"""The secret key check value, and every column that holds sealed secrets.

The check value is a known plaintext sealed with the database's key (``secret_key_check``,
one row). :func:`check` decides whether a process's keys fit the database, and stages the
check value when there is none yet; the caller owns the transaction.

:data:`SEALED` lists every column written with ``SecretBox.seal``: channels and project
overrides (Slack installs write their bot token into these too). A new sealed column must be
added here, or ``loadbell keys rotate`` would leave it under the old key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.security.secretbox import SecretBox, SecretKeyError
from loadbell.store.tables import channel_overrides, channels, secret_key_check

CHECK_ID = 1
CHECK_VALUE = {"loadbell": "secret key check"}

# (what the progress lines call it, the table; each has ``id`` and ``secrets``)
SEALED: tuple[tuple[str, sa.Table], ...] = (
    ("channels", channels),
    ("channel overrides", channel_overrides),
)


@dataclass(frozen=True)
class KeyMismatch:
    """Why the keys do not fit: ``opened`` of ``stored`` sealed values open (stored 0: the
    check value does not open)."""

    stored: int
    opened: int

    @property
    def partly(self) -> bool:
        return 0 < self.opened < self.stored


def opens_check(box: SecretBox, sealed: str) -> bool:
    try:
        return box.open(sealed) == CHECK_VALUE
    except SecretKeyError:
        return False


async def read_check(conn: AsyncConnection) -> str | None:
    return (
        await conn.execute(
            sa.select(secret_key_check.c.sealed).where(secret_key_check.c.id == CHECK_ID)
        )
    ).scalar()


async def check(conn: AsyncConnection, box: SecretBox) -> KeyMismatch | None:
    """None when ``box`` fits the database, else why not. Stages the check value when the
    database has none yet: on a database with no secrets, or one (set up before the check
    value existed) whose every secret ``box`` opens.

    Race-safe: the value is inserted only if absent and then read back, so of two processes
    with different keys on an empty database the one that commits second sees the first
    one's value (PostgreSQL's insert waits for the other transaction; SQLite's write lock
    makes them take turns) and is refused.
    """
    sealed = await read_check(conn)
    if sealed is None:
        stored = await _all_sealed(conn)
        opened = sum(1 for token in stored if box.opens(token))
        if opened < len(stored):
            return KeyMismatch(len(stored), opened)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(secret_key_check)
            .values(id=CHECK_ID, sealed=box.seal(CHECK_VALUE))
            .on_conflict_do_nothing(index_elements=["id"])
        )
        sealed = await read_check(conn)
        assert sealed is not None  # inserted now, or by another process first
    return None if opens_check(box, sealed) else KeyMismatch(0, 0)


async def _all_sealed(conn: AsyncConnection) -> list[str]:
    """Every sealed value (read once, when a database first gets its check value)."""
    out: list[str] = []
    for _, table in SEALED:
        rows = await conn.execute(sa.select(table.c.secrets).where(table.c.secrets.is_not(None)))
        out.extend(token for (token,) in rows)
    return out


async def replace_check(conn: AsyncConnection, old: str | None, new: str) -> bool:
    """Store ``new`` as the check value if it is still ``old`` (None: there is none)."""
    if old is None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        result = await conn.execute(
            dialect.insert(secret_key_check)
            .values(id=CHECK_ID, sealed=new)
            .on_conflict_do_nothing(index_elements=["id"])
        )
    else:
        result = await conn.execute(
            sa.update(secret_key_check)
            .where(secret_key_check.c.id == CHECK_ID, secret_key_check.c.sealed == old)
            .values(sealed=new, updated_at=datetime.now(UTC))
        )
    return bool(result.rowcount)


async def last_id(conn: AsyncConnection, table: sa.Table) -> int:
    """The highest id in ``table`` (0: it is empty)."""
    return int((await conn.execute(sa.select(sa.func.max(table.c.id)))).scalar() or 0)


async def sealed_batch(
    conn: AsyncConnection, table: sa.Table, after_id: int, limit: int, up_to: int
) -> list[tuple[int, str]]:
    """Up to ``limit`` (id, sealed value) of ``table`` past ``after_id`` and up to
    ``up_to``, in id order."""
    rows = await conn.execute(
        sa.select(table.c.id, table.c.secrets)
        .where(table.c.id > after_id, table.c.id <= up_to, table.c.secrets.is_not(None))
        .order_by(table.c.id)
        .limit(limit)
    )
    return [(r.id, r.secrets) for r in rows]


async def replace_sealed(
    conn: AsyncConnection, table: sa.Table, row_id: int, old: str, new: str
) -> bool:
    """Store ``new`` in the row if it still holds ``old``: a value written meanwhile (by a
    process that already seals with the newest key) is left alone."""
    result = await conn.execute(
        sa.update(table).where(table.c.id == row_id, table.c.secrets == old).values(secrets=new)
    )
    return bool(result.rowcount)


async def current_sealed(conn: AsyncConnection, table: sa.Table, row_id: int) -> str | None:
    return (await conn.execute(sa.select(table.c.secrets).where(table.c.id == row_id))).scalar()
