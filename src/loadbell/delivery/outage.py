"""The database as one worker sees it: reachable, or in an outage.

When the database cannot be reached, the worker's parts (claims, result writes, the
heartbeat) keep trying with a :class:`Backoff` each, and never exit. :class:`Outage` makes
the log readable: one line when the outage begins and one when it ends, not one per retry.
A statement the database rolled back to break a deadlock is no outage: it gets a line of
its own and is tried again like the others.

Only a statement that *began* after the outage was seen can end it. When PostgreSQL shuts
down it ends its connections one by one, so a statement already under way on a connection
not yet ended may still succeed a few milliseconds after another has failed; counting that
success would log the outage's end and, at once, its start again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from loadbell.store.queue import QueueConflict

log = logging.getLogger("loadbell.worker")

FIRST_DELAY = 0.1  # seconds before the first retry
# The longest wait between two tries: the worker resumes within this long of the database
# coming back (plus a connect).
MAX_DELAY = 1.0  # seconds


class Backoff:
    """Waits that double from FIRST_DELAY up to MAX_DELAY, and start over after a success."""

    def __init__(self, first: float = FIRST_DELAY, most: float = MAX_DELAY) -> None:
        self.first, self.most = first, most
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.most)
        return delay

    def reset(self) -> None:
        self._next = self.first


class Outage:
    def __init__(self, worker: str, on_failure: Callable[[], None] | None = None) -> None:
        self.worker = worker
        self._since: float | None = None  # time.monotonic() of the first failure
        self._on_failure = on_failure  # each failed statement (the metrics count them)

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        """A statement failed for want of the database, or was rolled back to break a
        conflict with another transaction (then tried again, but not an outage)."""
        if self._on_failure is not None:
            self._on_failure()
        if isinstance(error, QueueConflict):
            log.warning(
                "worker %s: the database rolled a statement back (%s); trying it again",
                self.worker,
                _first_line(error),
            )
        elif self._since is None:
            self._since = time.monotonic()
            log.warning(
                "worker %s: database unreachable (%s); retrying until it is back",
                self.worker,
                _first_line(error),
            )

    def ok(self, began: float) -> None:
        """A statement that began at ``began`` (time.monotonic()) succeeded."""
        if self._since is not None and began >= self._since:
            log.warning(
                "worker %s: database reachable again after %.1f s",
                self.worker,
                time.monotonic() - self._since,
            )
            self._since = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else error.__class__.__name__
