"""The wall clock noise control reads: quiet hours and throttles when an event is staged
(``services/noise.py``), and the worker's release of held deliveries
(``delivery/intake.py``).

One replaceable source, so that a test moves time for the API and the worker of a process
together (:func:`use`); everything else (leases, retries, timeouts) keeps the real clock,
because moving those would change what the queue sends, not what a rule decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Clock = Callable[[], float]  # epoch seconds

_clock: Clock = time.time


def now() -> float:
    """Epoch seconds by the current clock."""
    return _clock()


@contextmanager
def use(clock: Clock) -> Iterator[None]:
    """Read ``clock`` instead of the system's until the block ends (for tests)."""
    global _clock
    before, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = before
