"""A consistent copy of a SQLite database, taken while loadbell runs.

SQLite's online backup API (``sqlite3.Connection.backup``) copies the pages as of one
moment: writers go on meanwhile (WAL mode), and what they commit during the copy is not in
it. The copy is written beside the target under a temporary name and renamed into place
once complete, so a failed or interrupted backup never leaves a half-written file under
the target's name.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path


class BackupError(Exception):
    """The backup cannot be made; the message says why and what to do."""


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> int:
    """Copy the database at ``source`` to ``target``; returns the copy's size in bytes."""
    if not source.is_file():
        raise BackupError(f"there is no database at {source}; check LOADBELL_DATABASE_URL")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; choose another file or pass --force to replace it")
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is the database itself; choose another file")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder; create it first")
    # mode=rw: never create a database where there was none.
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        dst = sqlite3.connect(temp)
        try:
            src.backup(dst)  # all pages in one step: one consistent moment
            # A copy that needs no -wal file beside it: one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    finally:
        src.close()
    return target.stat().st_size
