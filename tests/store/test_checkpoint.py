"""The checkpointer keeps SQLite's write-ahead log bounded under steady writes and concurrent
readers, and truncates it once the database is idle.

Real SQLite files, written and read by threads on connections set up as loadbell's engine
sets up its own (WAL, no automatic checkpoints, ``synchronous=NORMAL``). The checkpointer
runs with a shorter interval, idle delay and sizes than in production, so that a few seconds
of writes put many times the bound through the log. Every figure asserted is a size; the
only timing asserted is a lower bound (the log is not truncated long before the idle delay).

The bound holds while the checkpointer can rewind the log: each RESTART lets new writes
reuse the file from its start, so between two of them the file grows by what was written
meanwhile. How often one succeeds depends on the machine: on a loaded one a round comes
late, or finds a reader's snapshot in the way and puts the RESTART off. So the writer here
commits at most ``RESET_BUDGET`` between two rewinds (``Checkpointer.resets``), except where
a test pins the log on purpose: the test checks what a rewind does and that rewinds keep
coming under readers, not how promptly the machine runs them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loadbell.store.checkpoint import Checkpointer

KB = 1024
MB = 1024 * KB
INTERVAL = 0.05  # seconds between checkpoint rounds
IDLE_AFTER = 1.0  # seconds of quiet before the log is truncated
RESTART_AT = 512 * KB  # log size that makes the checkpointer restart it
BOUND = 8 * MB  # what the -wal file must stay under while writes go on
# File size that makes the checkpointer truncate rather than restart: only a file already
# past the bound is truncated before the idle delay.
SHRINK_ABOVE = BOUND
VOLUME = 3 * BOUND  # bytes of rows written: the log takes more, far past the bound
ROW = 3_000  # bytes per inserted row: about one page of the log per row
ROWS = 4  # rows per commit
WRITER_PAUSE = 0.002  # seconds between two commits (a steady, not a flat-out, writer)
RESET_BUDGET = 1 * MB  # bytes of rows the writer commits at most between two rewinds
READ_HOLD = 0.003  # seconds a reader keeps its transaction open, as an API handler does
READ_PAUSE = 0.01  # seconds between two read transactions of a reader
WAIT = 120.0  # seconds: generous limit for every condition waited on


def _connect(path: Path) -> sqlite3.Connection:
    """A connection as ``db._on_connect`` sets one up."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def wal_size(path: Path) -> int:
    try:
        return Path(f"{path}-wal").stat().st_size
    except FileNotFoundError:
        return 0


@dataclass
class Traffic:
    """A steady writer and two readers on threads of their own, and the -wal file watched."""

    path: Path
    resets: Callable[[], int]  # rewinds of the log (RESTART, TRUNCATE) done so far
    paced: bool = True  # wait for a rewind after RESET_BUDGET (off while a test pins the log)
    written: int = 0  # bytes of rows committed
    last_commit: float = 0.0  # monotonic
    peak: int = 0  # largest -wal file size seen since ``reset_peak``
    errors: list[BaseException] = field(default_factory=list)
    _peak_lock: threading.Lock = field(default_factory=threading.Lock)
    _writing: threading.Event = field(default_factory=threading.Event)
    _parked: threading.Event = field(default_factory=threading.Event)  # writer not writing
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        self._writing.set()
        for target in (self._write, self._read, self._read, self._watch):
            thread = threading.Thread(target=self._guarded(target), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop_writing(self) -> None:
        """Stop the writer, and wait until its last transaction is over."""
        self._writing.clear()
        self.wait_for(self._parked.is_set, "the writer to stop")

    def stop(self) -> None:
        self._stop.set()
        self._writing.set()
        for thread in self._threads:
            thread.join(timeout=WAIT)

    def reset_peak(self) -> None:
        with self._peak_lock:
            self.peak = wal_size(self.path)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"waited {WAIT:g} s for {what}"
            time.sleep(0.01)

    def write(self, volume: int) -> None:
        """Let the writer commit ``volume`` more bytes of rows, and wait until it has."""
        target = self.written + volume
        self.wait_for(lambda: self.written >= target, f"{volume / MB:g} MB of writes")

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by wait_for in the test's thread
                self.errors.append(exc)

        return run

    def _write(self) -> None:
        conn = _connect(self.path)
        reset_seen, since_reset = -1, 0  # bytes committed since rewind number ``reset_seen``
        try:
            while not self._stop.is_set():
                if not self._writing.is_set():
                    self._parked.set()
                    self._writing.wait()
                    self._parked.clear()
                if self.resets() != reset_seen:
                    reset_seen, since_reset = self.resets(), 0
                elif self.paced and since_reset >= RESET_BUDGET:
                    time.sleep(INTERVAL / 10)  # wait for the checkpointer to rewind the log
                    continue
                conn.execute("BEGIN IMMEDIATE")
                for _ in range(ROWS):
                    conn.execute("INSERT INTO rows (body) VALUES (randomblob(?))", (ROW,))
                conn.execute("UPDATE counter SET n = n + 1")
                conn.execute("COMMIT")
                self.written += ROW * ROWS
                since_reset += ROW * ROWS
                self.last_commit = time.monotonic()
                time.sleep(WRITER_PAUSE)
        finally:
            conn.close()

    def _read(self) -> None:
        conn = _connect(self.path)
        try:
            while not self._stop.is_set():
                conn.execute("BEGIN")
                conn.execute(
                    "SELECT id, length(body) FROM rows ORDER BY id DESC LIMIT 20"
                ).fetchall()
                conn.execute("SELECT n FROM counter").fetchall()
                time.sleep(READ_HOLD)
                conn.execute("COMMIT")
                time.sleep(READ_PAUSE)
        finally:
            conn.close()

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._peak_lock:
                self.peak = max(self.peak, wal_size(self.path))
            time.sleep(0.005)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "wal.db"
    conn = _connect(path)
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    conn.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
    conn.execute("INSERT INTO counter VALUES (0)")
    conn.close()
    return path


@pytest.fixture
def checkpointer(db_path: Path) -> Iterator[Checkpointer]:
    checkpointer = Checkpointer(
        str(db_path),
        interval=INTERVAL,
        idle_after=IDLE_AFTER,
        restart_at=RESTART_AT,
        shrink_above=SHRINK_ABOVE,
    ).start()
    yield checkpointer
    checkpointer.stop()


@pytest.fixture
def traffic(db_path: Path, checkpointer: Checkpointer) -> Iterator[Traffic]:
    traffic = Traffic(db_path, resets=lambda: checkpointer.resets).start()
    yield traffic
    traffic.stop()
    assert not traffic.errors, traffic.errors


def test_log_stays_bounded_under_writes_and_readers_then_is_truncated_when_idle(
    traffic: Traffic,
) -> None:
    """While a writer and two readers keep at it, over three times the bound goes through the
    log and the -wal file stays under the bound; once writes stop, the file is truncated to
    0 bytes, not before the idle delay, though the readers go on reading."""
    traffic.write(VOLUME)
    traffic.stop_writing()
    peak = traffic.peak
    assert peak < BOUND, f"the -wal file reached {peak / MB:.1f} MB"

    traffic.wait_for(lambda: wal_size(traffic.path) == 0, "the -wal file to be truncated")
    truncated = time.monotonic()
    # Quiet is judged per round, so it may start a round or two before the last commit.
    assert truncated - traffic.last_commit >= IDLE_AFTER / 2


def test_log_is_bounded_again_once_a_long_reader_ends(traffic: Traffic, db_path: Path) -> None:
    """A read transaction held open keeps the log from being restarted, so the file grows;
    after it ends the file is truncated back under the bound and stays there."""
    traffic.write(RESTART_AT)
    slow = _connect(db_path)
    slow.execute("BEGIN")
    slow.execute("SELECT count(*) FROM rows").fetchall()  # its snapshot starts here
    traffic.paced = False  # no rewind can come while the snapshot pins the log
    traffic.write(BOUND)
    assert wal_size(db_path) >= BOUND  # pinned: nothing past the snapshot could be reused
    slow.execute("COMMIT")
    slow.close()

    traffic.wait_for(lambda: wal_size(db_path) < BOUND, "the -wal file to shrink")
    traffic.paced = True
    traffic.reset_peak()
    traffic.write(2 * BOUND)
    peak = traffic.peak
    assert peak < BOUND, f"the -wal file reached {peak / MB:.1f} MB"


def test_log_is_truncated_when_only_small_writes_go_on(traffic: Traffic, db_path: Path) -> None:
    """Once the big writes stop, a trickle of small commits (the workers' heartbeats) does not
    keep the log: the -wal file is truncated after the idle delay all the same."""
    traffic.write(2 * RESTART_AT)
    traffic.stop_writing()
    stopped = time.monotonic()
    assert wal_size(db_path) > 0
    beating = threading.Event()
    beating.set()
    truncated: list[float] = []  # when a heartbeat found the file cut to 0 bytes

    def heartbeat() -> None:
        conn = _connect(db_path)
        try:
            while beating.is_set():
                # Between two beats nothing else writes: a truncation shows as 0 bytes here.
                if not truncated and wal_size(db_path) == 0:
                    truncated.append(time.monotonic())
                conn.execute("UPDATE counter SET n = n + 1")
                time.sleep(INTERVAL / 2)
        finally:
            conn.close()

    beats = threading.Thread(target=heartbeat, daemon=True)
    beats.start()
    try:
        traffic.wait_for(lambda: bool(truncated), "the -wal file to be truncated")
        assert truncated[0] - stopped >= IDLE_AFTER / 2  # see the test above
    finally:
        beating.clear()
        beats.join(timeout=WAIT)
