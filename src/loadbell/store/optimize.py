"""``PRAGMA optimize`` on a SQLite file, as SQLite recommends, on a thread of its own.

SQLite's planner chooses between the delivery log's indexes (tables.py) by the statistics
``ANALYZE`` stores; without them it guesses, and a wrong guess reads the whole log.
https://sqlite.org/pragma.html#pragma_optimize recommends ``PRAGMA optimize=0x10002`` when a
long-lived connection opens, ``PRAGMA optimize`` every few hours, and again before it closes.
:class:`Optimizer` does that for ``loadbell serve`` on one connection of its own: at start,
every ``INTERVAL`` and at stop, never on the event loop's thread. Migrations that add
indexes run ``ANALYZE`` themselves (0007).

``PRAGMA analysis_limit`` keeps each ANALYZE to a sample of every index (milliseconds on a
log of a million deliveries). The 0x10000 flag ("check every table, not only those this
connection used") came with SQLite 3.46; before it, a connection that ran no query has
nothing to optimize. On older versions the optimizer therefore applies optimize's own rule
itself: it analyzes a table that has indexes and no statistics yet (once it holds
``MIN_ROWS`` rows: the planner's guesses serve small tables well), or whose size has changed
``GROWTH`` times over since its statistics were taken.

It waits until the file is in WAL mode (``serve`` sets it on its first connection: an
ANALYZE first would hold a lock that setting the mode cannot wait for), and a run that
meets a lock is tried again ``RETRY`` seconds later.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

INTERVAL = 3600.0  # seconds between runs (SQLite suggests every few hours; an hour is cheap)
FIRST = 1.0  # seconds after start before the first run: the engine opens the file first
RETRY = 5.0  # seconds before trying again after a run met a lock or a file not yet in WAL
ANALYSIS_LIMIT = 1000  # rows sampled per index by each ANALYZE
FULL_OPTIMIZE = (3, 46, 0)  # the first SQLite with optimize's 0x10000 flag
MIN_ROWS = 1000  # before 3.46: a table without statistics is analyzed from this size on
GROWTH = 10  # before 3.46: statistics are taken again when the size changed this many times


def optimize(conn: sqlite3.Connection) -> list[str]:
    """One ``PRAGMA optimize=0x10002``, or before SQLite 3.46 an ANALYZE of each table that
    needs one; returns the tables analyzed (always [] from 3.46 on: SQLite does not say)."""
    conn.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
    if sqlite3.sqlite_version_info >= FULL_OPTIMIZE:
        conn.execute("PRAGMA optimize=0x10002")
        return []
    stale = stale_tables(conn)
    for table in stale:
        conn.execute(f'ANALYZE "{table}"')
    return stale


def stale_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables with indexes whose statistics are missing or out of date (see above)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT tbl_name FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name NOT LIKE 'sqlite_%' ORDER BY tbl_name"
        )
    ]
    known: dict[str, int] = {}
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        for table, stat in conn.execute("SELECT tbl, stat FROM sqlite_stat1"):
            known[table] = max(known.get(table, 0), int(str(stat).split()[0] or 0))
    stale = []
    for table in tables:
        rows = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        then = known.get(table)
        if then is None:
            if rows >= MIN_ROWS:
                stale.append(table)
        elif rows >= max(then, 1) * GROWTH or rows * GROWTH <= then:
            stale.append(table)
    return stale


class Optimizer:
    """Runs :func:`optimize` on ``path`` at start, every ``interval`` seconds, and at stop."""

    def __init__(self, path: str, interval: float = INTERVAL, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.interval = interval
        self.busy_timeout = busy_timeout  # seconds this thread waits for the write lock
        self.runs = 0  # optimizations done (for tests)
        self.analyzed: list[str] = []  # tables analyzed, before SQLite 3.46 (for tests)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadbell-optimize", daemon=True)

    def start(self) -> Optimizer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        wait = FIRST
        try:
            while not self._stop.wait(wait):
                if conn is None:
                    conn = self._open()
                wait = self.interval if conn is not None and self._once(conn) else RETRY
            if conn is not None:
                self._once(conn)  # before closing, as SQLite recommends
        finally:
            if conn is not None:
                conn.close()

    def _open(self) -> sqlite3.Connection | None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            log.debug("PRAGMA optimize put off: cannot open %s: %s", self.path, exc)
            return None
        return conn

    def _once(self, conn: sqlite3.Connection) -> bool:
        """One run; False when it should be tried again soon."""
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                return False
            self.analyzed.extend(optimize(conn))
            self.runs += 1
            return True
        except sqlite3.Error as exc:  # a lock held too long, a file being replaced
            log.debug("PRAGMA optimize put off: %s", exc)
            return False
