"""The secret key at start-up, and its rotation.

Unlike the other services these take the engine and own their transactions: ``open_box``
runs once when a process starts (``serve``, ``worker``, ``migrate``, the app's lifespan) and
must commit the check value before the process goes on; ``rotate`` re-encrypts while other
processes keep writing, so each batch commits on its own and holds its locks briefly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.security import key_file
from loadbell.security.key_file import KeySource
from loadbell.security.secretbox import SecretBox, SecretKeyError
from loadbell.store import key_check
from loadbell.store.db import transaction
from loadbell.store.key_check import KeyMismatch

ROTATE_BATCH = 100  # rows re-encrypted per transaction
_TRIES = 3  # start-up attempts when another process of the same folder makes the key file


async def open_box(engine: AsyncEngine, secret_key: str | None, path: Path) -> SecretBox:
    """The box of this process's keys, once the database has accepted them.

    On a database without a check value, the keys' check value is stored (see
    ``store/key_check.check``). With ``LOADBELL_SECRET_KEY`` unset and no key file, a new
    key is made and its file written in the transaction that stores the check value, so a
    refused key leaves no file behind. Raises :class:`SecretKeyError` with one line that
    says what to do.
    """
    for _ in range(_TRIES):
        source = key_file.resolve(secret_key, path)
        box = SecretBox(source.keys)
        mismatch = await _check(engine, source, box)
        if mismatch is None:
            return box
        if source.generated and key_file.exists(path):
            continue  # another process of this folder made the key file first: use it
        raise SecretKeyError(refusal(mismatch, source))
    raise SecretKeyError(f"the key file {path} changed while loadbell started; start again")


# Another process of the same folder wrote the key file first (this one's key was not stored).
_RACED = KeyMismatch(0, 0)


async def _check(engine: AsyncEngine, source: KeySource, box: SecretBox) -> KeyMismatch | None:
    """Why the keys do not fit the database, or None once they are stored as its keys."""
    wrote = False
    try:
        async with engine.connect() as conn:
            tx = await conn.begin()
            mismatch = await key_check.check(conn, box)
            if mismatch is None and source.new_file is not None:
                # Written before the commit: a crash in between leaves a key file and no
                # check value, and the next start simply uses that file.
                wrote = key_file.write_new(source.new_file, source.keys[0])
                mismatch = None if wrote else _RACED
            if mismatch is not None:
                await tx.rollback()
                return mismatch
            await tx.commit()
    except BaseException:
        if wrote and source.new_file is not None:
            key_file.remove(source.new_file)
        raise
    return None


def refusal(mismatch: KeyMismatch, source: KeySource) -> str:
    """One line: what does not fit, and what to do."""
    if mismatch.partly:
        return (
            f"{mismatch.stored - mismatch.opened} of {mismatch.stored} stored secrets do not "
            f"open with {source.origin}: list every key they were written with in "
            "LOADBELL_SECRET_KEY (comma-separated, newest first), run `loadbell keys rotate`, "
            "then start again"
        )
    what = "its stored secrets do" if mismatch.stored else "its check value does"
    nothing = "; no key file was written" if source.generated else ""
    # A missing key file is restored where it was; otherwise the folder may be the wrong one.
    restore = (
        f"restore the old key file to {source.new_file.resolve()}"
        if source.new_file is not None
        else "start loadbell from the folder that holds its key file"
    )
    return (
        f"the secret key does not fit this database ({what} not open with {source.origin}"
        f"{nothing}): {restore}, or set LOADBELL_SECRET_KEY to the key the database was set "
        "up with"
    )


@dataclass
class Rotation:
    """What ``rotate`` did, per table."""

    resealed: dict[str, int] = field(default_factory=dict)  # sealed again with the newest key
    current: int = 0  # already sealed with the newest key
    unopened: list[str] = field(default_factory=list)  # "channels 12": no key opens them
    check_value: bool = False  # the check value is now sealed with the newest key

    @property
    def total(self) -> int:
        return sum(self.resealed.values())

    def summary(self) -> str:
        parts = ", ".join(f"{n} {label}" for label, n in self.resealed.items())
        check = "; the check value too" if self.check_value else ""
        return (
            f"re-encrypted {self.total} secrets with the newest key ({parts}){check}; "
            f"{self.current} were sealed with it already"
        )

    def unopened_message(self) -> str:
        shown = ", ".join(self.unopened[:10]) + (" ..." if len(self.unopened) > 10 else "")
        return (
            f"{len(self.unopened)} secrets open with none of the keys ({shown}): add the key "
            "they were written with to LOADBELL_SECRET_KEY and run `loadbell keys rotate` again"
        )


async def rotate(
    engine: AsyncEngine,
    box: SecretBox,
    progress: Callable[[str], None],
    *,
    batch: int = ROTATE_BATCH,
) -> Rotation:
    """Seal every stored secret, then the check value, with the newest key of ``box``.

    Each batch of rows is one transaction, and a row is replaced only if it still holds
    what was read (a row written meanwhile is read again and sealed anew), so API and
    workers may keep running, as long as they know the newest key too. A table is walked
    up to the last id it held when its walk began: rows added later were sealed by such
    a process, with the newest key, and a walk that followed them could go on for as
    long as channels keep being created. Running it again finds everything current and
    changes nothing. The check value goes last: once it is sealed with the newest key,
    every secret is. Raises :class:`SecretKeyError` when the check value opens with none
    of the keys (they are not this database's).
    """
    async with transaction(engine) as conn:
        old_check = await key_check.read_check(conn)
    if old_check is not None and not key_check.opens_check(box, old_check):
        raise SecretKeyError(
            "the database's check value opens with none of the keys in LOADBELL_SECRET_KEY "
            "(or the key file): add the key the database was set up with, after the new one"
        )
    done = Rotation()
    for label, table in key_check.SEALED:
        count, after = 0, 0
        async with transaction(engine) as conn:
            last = await key_check.last_id(conn, table)
        while True:
            async with transaction(engine) as conn:
                rows = await key_check.sealed_batch(conn, table, after, batch, last)
                for row_id, token in rows:
                    changed = await _reseal_row(conn, box, table, row_id, token)
                    if changed is None:
                        done.unopened.append(f"{label} {row_id}")
                    elif changed:
                        count += 1
                    else:
                        done.current += 1
            if not rows:
                break
            after = rows[-1][0]
            progress(f"{label}: {count} re-encrypted so far (up to id {after})")
        done.resealed[label] = count
    if not done.unopened:
        done.check_value = await _reseal_check(engine, box)
    return done


async def _reseal_row(
    conn: AsyncConnection,
    box: SecretBox,
    table: sa.Table,
    row_id: int,
    token: str,
) -> bool | None:
    """True: sealed again; False: it already was sealed with the newest key (or the row
    lost its secrets meanwhile); None: no key opens it."""
    current: str | None = token
    while current is not None:
        try:
            new = box.reseal(current)
        except SecretKeyError:
            return None
        if new is None:
            return False
        if await key_check.replace_sealed(conn, table, row_id, current, new):
            return True
        current = await key_check.current_sealed(conn, table, row_id)
    return False


async def _reseal_check(engine: AsyncEngine, box: SecretBox) -> bool:
    """Seal the check value with the newest key (store it if there is none)."""
    while True:
        async with transaction(engine) as conn:
            old = await key_check.read_check(conn)
            new = box.seal(key_check.CHECK_VALUE)
            assert new is not None
            if old is not None and box.reseal(old) is None:
                return False
            if await key_check.replace_check(conn, old, new):
                return True
