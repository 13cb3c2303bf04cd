"""Attempt deadlines, kept by one loop timer for all the attempts under way.

Every attempt has a deadline (``sender.py``). ``asyncio.timeout`` around each one made,
scheduled and cancelled a timer of the event loop per attempt, and that cost the worker
about 7 µs of CPU per delivery, 4 % of a drain's (docs/decisions.md, D75). Here an attempt
only notes its deadline in a dict, and one timer, set for the earliest deadline noted, wakes
when that comes. It cancels each attempt past its deadline, then sets itself for the
earliest one left. The timer fires at the exact deadline of the attempt it was set for,
so no attempt ends later than ``asyncio.timeout`` would end it.

An attempt that runs past its deadline ends as with ``asyncio.timeout``: its task is
cancelled, and leaving the block turns that cancellation into ``TimeoutError``. A
cancellation from elsewhere (the worker stopping) stays a cancellation.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType


class Deadlines:
    """The deadlines of the attempts under way on one event loop."""

    def __init__(self) -> None:
        self._due: dict[Deadline, float] = {}  # loop.time() by which each must have ended
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None  # the timer's

    def within(self, seconds: float, loop: asyncio.AbstractEventLoop) -> Deadline:
        """``with deadlines.within(s, loop):``, in a task of ``loop``, the running one: the
        block ends within ``s`` seconds, with ``TimeoutError`` if it has not finished by
        then.

        The caller passes the loop it keeps: asking for the running loop (as
        ``asyncio.current_task()`` and ``asyncio.get_running_loop()`` do) is a system call
        on Python 3.11, ``getpid``, which CPython makes to tell a forked child's loop apart
        (docs/decisions.md, D80)."""
        return Deadline(self, seconds, loop)

    def _add(self, deadline: Deadline, when: float, loop: asyncio.AbstractEventLoop) -> None:
        self._due[deadline] = when
        # A timer left on another loop (one that has ended) would never fire here.
        if when < self._timer_at or loop is not self._loop:
            self._set(when, loop)

    def _remove(self, deadline: Deadline) -> None:
        # The timer stays: when it fires it finds nothing due and sets itself for the
        # next deadline (cancelling it here would cost what the timer per attempt did).
        self._due.pop(deadline, None)

    def _set(self, when: float, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire, loop)
        self._timer_at, self._loop = when, loop

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        now = loop.time()
        late = [d for d, when in self._due.items() if when <= now]
        for deadline in late:
            del self._due[deadline]
            deadline.expire()
        if self._due:
            self._set(min(self._due.values()), loop)


class Deadline:
    """One attempt's deadline: a context manager, entered once, in a task. A plain one, not
    an async one as ``asyncio.timeout`` is: entering and leaving await nothing."""

    __slots__ = ("_cancelling", "_deadlines", "_loop", "_seconds", "_task", "expired")

    def __init__(
        self, deadlines: Deadlines, seconds: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._loop = loop
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.expired = False

    def __enter__(self) -> Deadline:
        loop = self._loop
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline must be entered in a task of its loop")
        self._task = task
        self._cancelling = task.cancelling()
        self._deadlines._add(self, loop.time() + self._seconds, loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._deadlines._remove(self)
        if self.expired and self._task is not None:
            # As asyncio.timeout does: the cancellation was ours, unless another came too.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def expire(self) -> None:
        """The deadline passed with the block still under way: cancel it."""
        self.expired = True
        if self._task is not None:
            self._task.cancel()
