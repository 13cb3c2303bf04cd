"""Admission: a request the process cannot serve promptly gets a 503 at once.

Without a cap, a burst past what the process can serve queues without bound: every request
is taken in, each gets a sliver of the event loop, all of them get slower, clients time
out after 30 s, and the server still finishes (and commits) what they gave up on. Measured
on SQLite at 500 to 1,000 requests/s: 5,865 requests in flight, 30 to 41 % of clients
timed out (docs/benchmarks.md, "Overload"). Here a request the process cannot take on gets
``503 {"error": "overloaded"}`` with ``Retry-After`` before anything reads its body or the
database, so it costs the server little and the client an immediate, retryable answer; the
requests admitted are served at the pace the process can keep.

Two signals of the process's own pace, each enough to refuse any request:

- **Requests in flight** (``LOADBELL_MAX_IN_FLIGHT``): one counter per process, on the
  event loop's thread, so no lock; a request counts from the moment it is admitted (by
  ``api/edge.py``) until its response has been sent (or it failed). It bounds what the process
  holds at once: memory, pooled connections, the queue behind SQLite's write lock.
- **How far behind the event loop runs** (:mod:`loadbell.api.loop_lag`), past
  ``LOADBELL_MAX_LOOP_LAG_MS`` (50). A cap alone did not hold: at 800 requests/s on the
  2-core machine, with 32 or 64 admitted at once the loop spent all its time on admitted
  work, the requests to refuse waited behind it in the socket buffers, and clients timed
  out as before (docs/benchmarks.md, "Overload"). Refusing while the loop is late keeps
  time for the refusals themselves, whatever the machine's speed and whatever else runs
  on it.

A third signal refuses only API requests that change something (under ``/api/``, any
method but GET, HEAD and OPTIONS): more deliveries due and not yet sent than
``LOADBELL_MAX_DUE_BACKLOG`` (:mod:`loadbell.api.due_backlog`). It keeps the API from making
promises the workers cannot keep, so a busy machine gives the worker the CPU the API would
have spent (docs/benchmarks.md, "A busy machine"). Reads go on: they add nothing to
deliver, and people look at the delivery log exactly then. So do the web pages' forms: a
person signing in or fixing a channel is not the flood this is about.

Not counted (``EXEMPT``): ``/healthz`` (a load balancer or orchestrator must tell
"overloaded" from "dead", and it reads one ``SELECT 1`` with its own timeout) and the web
pages' static files, Swagger UI's for ``/docs`` among them (read from disk, no database),
and ``/metrics`` (an overloaded server must still report that it is: its one statement has
a 2 s timeout). Everything else, the API and the pages, counts.
"""

from __future__ import annotations

from starlette.types import Scope

from loadbell.api.asgi_answer import Answer, asgi_json_answer
from loadbell.api.due_backlog import DueBacklog
from loadbell.api.loop_lag import LoopLag

# Paths admission lets through, always: exact paths, and prefixes ending in "/".
EXEMPT = ("/healthz", "/api/v1/healthz", "/static/", "/metrics")
# Seconds a refused client should wait: overload is a passing condition, and an admitted
# request is served within well under a second (docs/benchmarks.md, "Overload").
RETRY_AFTER = 1
# Requests in flight from which a late loop refuses: below it, the lateness is not this
# process's own work (other processes took the CPU), and refusing would not help.
LATE_AND_BUSY = 8
# Methods that change nothing: not refused for the due backlog.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The paths the due backlog refuses changes on: the API's, not the pages' forms.
BACKLOG_PATHS = "/api/"


_EXACT = frozenset(p for p in EXEMPT if not p.endswith("/"))
_PREFIXES = tuple(p for p in EXEMPT if p.endswith("/"))


def exempt(path: str) -> bool:
    return path in _EXACT or path.startswith(_PREFIXES)


class Admission:
    """Whether to take a request on, and how many are in flight (the request's edge,
    ``api/edge.py``, asks and counts)."""

    def __init__(
        self,
        max_in_flight: int,
        lag: LoopLag | None = None,
        max_lag: float = 0.05,
        retry_after: int = RETRY_AFTER,
        backlog: DueBacklog | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.lag = lag  # None: the cap alone
        # Seconds the loop may run late. Each request needs a few turns of the loop, so its
        # answer takes a few times this long; a 503 needs one.
        self.max_lag = max_lag
        self.backlog = backlog  # None: requests are not refused for the due backlog
        self.in_flight = 0  # requests admitted and not yet answered
        self._busy = _refusal(
            "the server is handling as many requests as it can answer promptly (at most "
            f"{max_in_flight} at once), so this one was not started and nothing changed; "
            f"send it again after {retry_after} s (Retry-After)",
            retry_after,
        )
        bound = backlog.bound if backlog is not None else 0
        self._behind = _refusal(
            f"more than {bound} deliveries are due and not yet sent, so the server takes no "
            "change that could add to them until the workers catch up; nothing changed; "
            f"send it again after {retry_after} s (Retry-After)",
            retry_after,
        )

    def refusal(self, scope: Scope) -> Answer | None:
        """The 503 for a request this process should not take on now, or None to admit it
        (the caller then counts it in ``in_flight`` until its answer is sent)."""
        if self.in_flight >= self.max_in_flight or (
            self.in_flight >= LATE_AND_BUSY
            and self.lag is not None
            and self.lag.seconds > self.max_lag
        ):
            return self._busy
        if (
            self.backlog is not None
            and self.backlog.over
            and scope["method"] not in SAFE_METHODS
            and scope["path"].startswith(BACKLOG_PATHS)
        ):
            return self._behind
        return None


def _refusal(message: str, retry_after: int) -> Answer:
    """The status, body and headers of a 503 ``overloaded``, built once."""
    return asgi_json_answer(
        503,
        {"error": "overloaded", "message": message, "field": None},
        [(b"retry-after", str(retry_after).encode())],
    )
