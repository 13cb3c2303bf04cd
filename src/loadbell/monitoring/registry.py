"""The metrics of one process, in a registry of its own, each with a ``process`` label.

Why a registry per process and not prometheus-client's multiprocess mode: loadbell's
processes (``serve`` behind a proxy, any number of ``loadbell worker``) may run on several
machines, and multiprocess mode only joins processes that share one directory on one host;
it also needs that directory cleaned at each start and makes every gauge pick a merge mode.
Here each process serves its own figures under ``process="serve-<host>-<pid>"`` or
``"worker-<host>-<pid>"``, Prometheus scrapes each one, and queries add them up with
``sum without (process)``. A registry per :class:`Metrics` (never the client's global one)
also lets a test build many apps in one interpreter.

prometheus-client has no constant labels, so ``process`` is an ordinary label whose value
is bound here, once per process: the methods below take only the labels that vary.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from loadbell.monitoring.attempts import AttemptTally

# Seconds. An attempt is a webhook call: a few ms on a LAN, up to its timeout (10 s by
# default) on a slow receiver; an API call is mostly under 10 ms.
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

# What an attempt came to, as the ``outcome`` label says it (the delivery's new status is
# succeeded / pending / failed in the database).
OUTCOMES = {"succeeded": "delivered", "pending": "retry", "failed": "failed"}

# The worker's state, as /healthz words it, and what loadbell_worker_up says of it.
RUNNING = "running"
WAITING = "waiting for the database"
STOPPED = "stopped"


def process_name(role: str) -> str:
    """``serve-<host>-<pid>`` or ``worker-<host>-<pid>``: unique per process, stable for
    its life."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


class Metrics:
    def __init__(self, process: str) -> None:
        self.process = process
        self.registry = CollectorRegistry(auto_describe=True)
        r, p = self.registry, ("process",)
        # What each attempt came to: plain numbers read at scrape time (attempts.py).
        self.attempts = AttemptTally(process, OUTCOMES, ATTEMPT_BUCKETS)
        r.register(self.attempts)
        self.claims = Counter(
            "loadbell_claims",
            "Claim transactions the worker ran (each leases up to LOADBELL_CLAIM_BATCH).",
            p,
            registry=r,
        )
        self.claimed = Counter(
            "loadbell_claimed_deliveries",
            "Deliveries this worker took: by a claim, or handed over by the API of its own "
            "process (source=handoff).",
            [*p, "source"],
            registry=r,
        )
        self.lease_expiries = Counter(
            "loadbell_lease_expiries",
            "Deliveries claimed over another claim's lease: it had run out, or its worker's "
            "heartbeat had lapsed (a worker died or stalled).",
            p,
            registry=r,
        )
        self.pending = Gauge(
            "loadbell_deliveries_pending",
            "Deliveries not yet delivered or failed for good (the whole database), read at "
            "scrape time.",
            p,
            registry=r,
        )
        self.due = Gauge(
            "loadbell_deliveries_due",
            "Pending deliveries whose time has come and that no worker holds (the whole "
            "database), read at scrape time.",
            p,
            registry=r,
        )
        self.oldest_due = Gauge(
            "loadbell_oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has been due (0 when none is), read at scrape time.",
            p,
            registry=r,
        )
        self.worker_up = Gauge(
            "loadbell_worker_up",
            "1 while this process's delivery worker runs and reaches the database, else 0.",
            p,
            registry=r,
        )
        self.worker_waiting = Gauge(
            "loadbell_worker_waiting_for_database",
            "1 while this process's delivery worker waits for the database to come back.",
            p,
            registry=r,
        )
        self.requests = Counter(
            "loadbell_http_requests",
            "HTTP requests by method, route template (/api/v1/runs/{run_id}, not the raw "
            "path) and status.",
            [*p, "method", "route", "status"],
            registry=r,
        )
        self._by_request: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.request_seconds = Histogram(
            "loadbell_http_request_duration_seconds",
            "From the request's arrival to its answer's last byte, by method and route template.",
            [*p, "method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.database_errors = Counter(
            "loadbell_database_errors",
            "Statements that failed for the database's sake, by where: api, worker, metrics.",
            [*p, "where"],
            registry=r,
        )
        # Bound once: the hot paths then skip a label lookup.
        self._claims = self.claims.labels(process)
        self._lease_expiries = self.lease_expiries.labels(process)
        self._claimed = {s: self.claimed.labels(process, s) for s in ("claim", "handoff")}
        for where in ("api", "worker", "metrics"):
            self.database_errors.labels(process, where)  # 0 from the start, not absent

    # -- the worker ---------------------------------------------------------------------

    def attempt(self, kind: str, number: int, status: str, seconds: float) -> None:
        """An attempt (number 1 for the first) ended and left its delivery in ``status``."""
        self.attempts.add(kind, number, status, seconds)

    def claim(self, leased: int, taken_over: int) -> None:
        """A claim transaction leased ``leased`` deliveries, ``taken_over`` of them over
        another claim's lease."""
        self._claims.inc()
        if leased:
            self._claimed["claim"].inc(leased)
        if taken_over:
            self._lease_expiries.inc(taken_over)

    def handed_off(self, count: int) -> None:
        self._claimed["handoff"].inc(count)

    def watch_worker(self, state: Callable[[], str]) -> None:
        """Read the worker's state at each scrape: RUNNING, WAITING or STOPPED."""
        self.worker_up.labels(self.process).set_function(lambda: float(state() == RUNNING))
        self.worker_waiting.labels(self.process).set_function(lambda: float(state() == WAITING))

    def worker_absent(self, absent: bool) -> None:
        """serve's worker process does not answer (``absent``): loadbell_worker_up 0 in
        its stead, under this process's name; once it answers, its own figures say."""
        if absent:
            self.worker_up.labels(self.process).set(0)
        else:
            with contextlib.suppress(KeyError):
                self.worker_up.remove(self.process)

    # -- the backlog, read at scrape time ----------------------------------------------

    def backlog(self, pending: int, due: int, oldest_due_age: float) -> None:
        self.pending.labels(self.process).set(pending)
        self.due.labels(self.process).set(due)
        self.oldest_due.labels(self.process).set(oldest_due_age)

    # -- the API and everything else ---------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._by_request.get(key)
        if children is None:
            # Looked up once per method, route and status (bounded: route templates, not
            # paths), not twice per request.
            children = self._by_request[key] = (
                self.requests.labels(self.process, method, route, str(status)),
                self.request_seconds.labels(self.process, method, route),
            )
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def database_error(self, where: str) -> None:
        self.database_errors.labels(self.process, where).inc()
