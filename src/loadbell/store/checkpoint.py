"""WAL checkpoints on a thread of their own, not inside a request's COMMIT.

In WAL mode SQLite copies the log back into the database file ("checkpoint") when a COMMIT
finds the log past ``wal_autocheckpoint`` pages, and that COMMIT waits for it. loadbell
runs COMMIT on the event loop's thread (``sqlite_driver.py``), so the loop waited too:
with ``synchronous=FULL`` a checkpoint syncs the database file, and commits measured at
p50 0.4 ms had a p99 of 7.5 ms and stalls of up to 380 ms, each holding up every request
and delivery of the process.

So the engine's connections do not checkpoint (``wal_autocheckpoint=0``), and this thread
runs a PASSIVE checkpoint every ``interval`` seconds on its own connection. PASSIVE never
waits for readers or writers; the log grows by at most one interval of writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between checkpoints


class Checkpointer:
    def __init__(self, path: str, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="loadbell-wal-checkpoint", daemon=True
        )

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next round tries again
                    log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            if conn is not None:
                conn.close()
