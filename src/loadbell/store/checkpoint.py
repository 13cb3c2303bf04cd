"""WAL checkpoints on a thread of their own, not inside a request's COMMIT, and a log that
stays bounded under steady traffic.

In WAL mode SQLite copies the log back into the database file ("checkpoint") when a COMMIT
finds the log past ``wal_autocheckpoint`` pages, and that COMMIT waits for it. loadbell
runs COMMIT on the event loop's thread (``sqlite_driver.py``), so the loop waited too:
with ``synchronous=FULL`` a checkpoint syncs the database file, and commits measured at
p50 0.4 ms had a p99 of 7.5 ms and stalls of up to 380 ms, each holding up every request
and delivery of the process. So the engine's connections do not checkpoint
(``wal_autocheckpoint=0``), and this thread does, on its own connection.

Copying frames back is not enough to bound the ``-wal`` file. SQLite rewinds the log to its
start only when a writer begins after every frame has been copied and no reader is still
using the log; otherwise new frames go on at its end. A PASSIVE checkpoint never waits: at
200 events/s a commit lands every few milliseconds while a checkpoint copies and syncs, so
the log was never all copied when a writer began, and the file grew by 13 MB/s (4 GB in
five minutes). Nor does SQLite shrink the file once it has grown, unless a TRUNCATE
checkpoint runs or the writing connection sets ``journal_size_limit``.

So each round (every ``interval`` seconds) does:

1. A PASSIVE checkpoint. It copies what no reader still needs and takes no lock that
   writers or readers wait for; nearly all the copying and syncing is done here. Up to some
   50 events/s that is enough: a writer regularly finds the log all copied and rewinds it
   (the file stayed at 3 MB at 20 events/s, 7 MB at 50).
2. If the log holds ``restart_at`` bytes or more, a RESTART: it takes the writer lock,
   copies the frames left, and checks that no reader still uses the log, so that the next
   writer starts the log again from its beginning. Frames left to copy are synced while it
   holds the writer lock (from 0.5 ms to over 20 ms on the development VM, with the disk
   busy), so PASSIVE goes first, again until a pass finds nothing new, and the RESTART
   then waits for nothing: if a writer holds the lock (at 200 events/s, 40 % of the time)
   or a reader is still in the log, it gives up at once, and is tried again
   ``RETRY_PAUSE`` later. Such a RESTART holds the writer lock for well under a
   millisecond. Only the last of a round's ``TRIES`` waits, up to ``WAIT_MS``, and syncs
   whatever it finds left.
3. TRUNCATE instead (a RESTART that also cuts the file to 0 bytes) when the file is larger
   than ``shrink_above``, or when the database has been quiet for ``idle_after`` seconds,
   so that an idle database keeps no log to speak of. Quiet means that no round saw more
   than ``QUIET_FRAMES`` new frames: the workers' heartbeats (a row each, every second)
   and a stray run update do not keep a finished load's log on disk. Under steady
   traffic RESTART is preferred: the file keeps its size and the next writers overwrite it,
   where freeing and reallocating it cost a TRUNCATE 18-22 ms for a 24 MB file.

A query that runs for seconds pins the log until it ends (its snapshot needs every frame
written after it began): the file grows meanwhile, and is restarted, or truncated when
past ``shrink_above``, in the rounds after it ends. At a steady 200 events/s the file stays
at 21-30 MB (``bench/wal.py``; docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

MB = 1024 * 1024
# Seconds between rounds. A round that cannot restart the log lets it grow by one interval
# of writes (about 6.5 MB at 200 events/s).
INTERVAL = 0.5
# Log size (bytes) that makes a round restart the log. Below it the log is left to rewind by
# itself and writers are never kept out. At 200 events/s the log reaches it every two or
# three rounds and the file stays at 21-30 MB: under the 64 MB that loadbell promises,
# with room for about five rounds in a row that fail.
RESTART_AT = 16 * MB
# -wal file size (bytes) above which a round truncates rather than restarts. Steady traffic
# does not reach it (that would take about 1,000 events/s); a long query, or rounds that
# kept failing, do. The file is then cut back once and regrows only as far as traffic needs.
SHRINK_ABOVE = 48 * MB
# Seconds of quiet after which the -wal file is truncated to 0 bytes. Pauses between the
# stages of a load test keep the file; a finished test leaves none.
IDLE_AFTER = 10.0
# New frames (pages) a round may see and still count as quiet: a few small transactions,
# such as the workers' heartbeats. 200 events/s write about 800 frames per round.
QUIET_FRAMES = 64
# A -wal file below this size (bytes) is left alone while quiet: the heartbeats that follow
# a truncation rewrite the same few pages, so truncating again would only churn.
QUIET_KEEP = 256 * 1024
# RESTART (or TRUNCATE) attempts per round, and seconds between them: long enough for the
# transaction in the way (a write holds the lock a few ms, an API read tens of ms) to end.
TRIES = 5
RETRY_PAUSE = 0.025
# Milliseconds the round's last attempt may wait for the writer lock, then (holding it) for
# the readers. Writers kept out poll the lock after 1, 3 and 8 ms (SQLite's busy handler).
WAIT_MS = 2
CATCH_UP_PASSES = 8  # at most, before a RESTART: each copies what came in during the last
_FRAME_HEADER = 24  # bytes before each page in the log


class Checkpointer:
    def __init__(
        self,
        path: str,
        interval: float = INTERVAL,
        *,
        idle_after: float = IDLE_AFTER,
        restart_at: int = RESTART_AT,
        shrink_above: int = SHRINK_ABOVE,
    ) -> None:
        self.path = path
        self.wal_path = f"{path}-wal"
        self.interval = interval  # seconds
        self.idle_after = idle_after  # seconds
        self.restart_at = restart_at  # bytes
        self.shrink_above = shrink_above  # bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="loadbell-wal-checkpoint", daemon=True
        )
        self._frames = 0  # frames in the log at the last round
        self._last_busy = time.monotonic()  # a round that saw more than QUIET_FRAMES, or the start
        self._frame_size = 0  # bytes per frame of the log, once connected
        self.resets = 0  # RESTARTs and TRUNCATEs done: the log rewound (for tests, metrics)

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
                        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                        self._frame_size = page_size + _FRAME_HEADER
                    self._round(conn)
                except sqlite3.Error as exc:  # the next round tries again
                    log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            if conn is not None:
                conn.close()

    def _round(self, conn: sqlite3.Connection) -> None:
        now = time.monotonic()
        _, frames, _ = _checkpoint(conn, "PASSIVE")
        # Frames written since the last round; a log that was rewound meanwhile started again
        # from 0.
        new = frames - self._frames if frames >= self._frames else frames
        self._frames = frames
        if new > QUIET_FRAMES:
            self._last_busy = now
        mode = self._mode(frames, now)
        if mode is None:
            return
        for attempt in range(TRIES):
            if attempt and self._stop.wait(RETRY_PAUSE):
                return
            _catch_up(conn)
            last = attempt == TRIES - 1
            conn.execute(f"PRAGMA busy_timeout = {WAIT_MS if last else 0}")
            busy, frames, copied = _checkpoint(conn, mode)
            if not busy:
                self.resets += 1
                return
        log.debug("WAL %s put off to the next round: %d of %d frames copied", mode, copied, frames)

    def _mode(self, frames: int, now: float) -> str | None:
        """RESTART, TRUNCATE or nothing, from the log's frames and the file's size."""
        try:
            size = os.stat(self.wal_path).st_size
        except FileNotFoundError:  # the last connection to close removes the log
            return None
        if size == 0:
            return None
        if size > self.shrink_above:
            return "TRUNCATE"
        if now - self._last_busy >= self.idle_after:
            return "TRUNCATE" if size >= QUIET_KEEP else None
        if frames * self._frame_size >= self.restart_at:
            return "RESTART"
        return None


def _catch_up(conn: sqlite3.Connection) -> None:
    """PASSIVE until a pass finds the log all copied and no frame new since the last."""
    seen = -1
    for _ in range(CATCH_UP_PASSES):
        _, frames, copied = _checkpoint(conn, "PASSIVE")
        if frames == copied == seen:
            return
        seen = frames if frames == copied else -1


def _checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """``(busy, frames in the log, frames copied)``: busy is 1 when a RESTART or TRUNCATE
    gave up (writer lock or readers), and frames are -1 when the file is not in WAL mode."""
    busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(busy), int(frames), int(copied)
