"""The Python client for loadbell's API, used by every integration and usable on its own.

It never raises into a load test. Every call has a timeout and a small retry; when the
server cannot be reached or refuses a call, the client warns **once** on stderr and the
call returns ``None`` (or ``False``). The load test goes on either way.

A server that cannot be reached (refused, reset, or no answer within the timeout) opens
a circuit breaker: later calls get one attempt each, with a short timeout, and after one
of those fails too, calls are skipped for a while. A hanging server so costs a few
seconds in all, not a timeout per call. ``POST /runs`` carries an ``Idempotency-Key`` (one
fresh UUID per run to create, the same on its retries), so it is retried like any call: a
repeat the server already served answers with the same run. A live report has no key and is
never repeated once the request may have reached the server.

    from loadbell.client import Client, RunReporter

    client = Client()                      # LOADBELL_URL, LOADBELL_TOKEN, LOADBELL_PROJECT
    run = RunReporter(client)
    run.start("checkout", trigger="manual")   # creates the run, then Initializing
    run.status(2)                             # Running
    run.report({"requests": 120, "rps": 40.1})
    run.finish(3, "passed", {"requests": 1200, "p95_ms": 180.0})
    run.close()                               # waits (bounded) for the calls to go out

It is synchronous and uses only the standard library (``urllib``), so it also runs
cooperatively inside Locust's gevent workers. :class:`RunReporter` sends from one
background thread, in order, so a slow or dead server never holds up the load test.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import IO, Any, Protocol

from loadbell import __version__

DEFAULT_TIMEOUT = 5.0  # seconds, per attempt
DEFAULT_RETRIES = 2  # extra attempts after a connection error, a timeout, a 429 or a 5xx
_BACKOFF = (0.25, 1.0)  # seconds before the 2nd and 3rd attempts
PROBE_TIMEOUT = 1.0  # seconds: the one attempt a call gets while the breaker is open
PROBE_INTERVAL = 10.0  # seconds: calls are skipped this long after a failed probe
MAX_RETRY_AFTER = 5.0  # seconds: the longest Retry-After of a 429 or 503 the client waits
IDEMPOTENCY_KEY = "Idempotency-Key"


class Client:
    """One loadbell server, as seen by a load test.

    ``url`` is the server's base URL (``http://host:8080``; a trailing ``/api/v1`` is
    accepted too). Arguments left out come from ``LOADBELL_URL``, ``LOADBELL_TOKEN`` and
    ``LOADBELL_PROJECT``. Without a URL and a token the client is disabled: every call is
    a no-op, so a load test runs the same with or without loadbell configured.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: int | str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        stderr: IO[str] | None = None,
    ) -> None:
        url = url if url is not None else os.environ.get("LOADBELL_URL", "")
        self.base = url.strip().rstrip("/").removesuffix("/api/v1")
        self.token = (token if token is not None else os.environ.get("LOADBELL_TOKEN", "")).strip()
        raw_project = project if project is not None else os.environ.get("LOADBELL_PROJECT")
        self.project = _project_id(raw_project)
        self.timeout = timeout
        self.retries = max(0, retries)
        self._stderr = stderr
        self._warned = False
        self._lock = threading.Lock()
        self._unreachable = False  # the breaker: the last attempt could not reach the server
        self._skip_until = 0.0  # time.monotonic() before which calls are skipped

    @property
    def enabled(self) -> bool:
        return bool(self.base and self.token)

    def warn(self, message: str) -> None:
        """Print ``message`` on stderr, only the first time anything goes wrong."""
        with self._lock:
            if self._warned:
                return
            self._warned = True
        stream = self._stderr or sys.stderr
        try:
            print(
                f"loadbell: {message}; the load test goes on without (some) notifications",
                file=stream,
                flush=True,
            )
        except Exception:  # a closed stderr must not break the test either
            pass

    # -- the API, one method per call ----------------------------------------------------

    def create_run(
        self,
        test_name: str,
        *,
        project: int | None = None,
        trigger: str = "manual",
        idempotency_key: str | None = None,
    ) -> dict[str, Any] | None:
        """Create a run of the load test ``test_name`` (created on first use).

        ``idempotency_key`` names this one run to create: pass the same key when calling
        again for the same run (a new UUID by default), and the server answers with the
        run it already made instead of making a second one.
        """
        project_id = project if project is not None else self.project
        if project_id is None:
            project_id = self._first_project()
            if project_id is None:
                return None
        return self.call(
            "POST",
            "/runs",
            {"project_id": project_id, "load_test_name": test_name[:200], "trigger": trigger},
            headers={IDEMPOTENCY_KEY: idempotency_key or str(uuid.uuid4())},
        )

    def update_run(
        self,
        run_id: int,
        *,
        status: int | None = None,
        result: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if result is not None:
            body["result"] = result
        if metrics:
            body["metrics"] = metrics
        return self.call("PATCH", f"/runs/{run_id}", body)

    def report(self, run_id: int, metrics: dict[str, Any]) -> dict[str, Any] | None:
        return self.call("POST", f"/runs/{run_id}/reports", {"metrics": metrics})

    def threshold_failed(
        self, run_id: int, metric: str, expression: str = "*", value: float | None = None
    ) -> dict[str, Any] | None:
        body: dict[str, Any] = {"metric": metric[:255], "expression": expression[:255] or "*"}
        if value is not None:
            body["value"] = value
        return self.call("POST", f"/runs/{run_id}/threshold-failures", body)

    def report_available(self, run_id: int) -> dict[str, Any] | None:
        return self.call("POST", f"/runs/{run_id}/report-available", {})

    def _first_project(self) -> int | None:
        listing = self.call("GET", "/projects")
        items = (listing or {}).get("items") or []
        if not items:
            if listing is not None:
                self.warn("no project is visible to this token; set LOADBELL_PROJECT")
            return None
        return int(items[0]["id"])

    # -- transport -------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """Send one request; return the JSON answer, or ``None`` after warning once.

        A request with an ``Idempotency-Key`` header is repeated after a reset as any
        other call is; one that creates something without a key is not."""
        if not self.enabled:
            return None
        with self._lock:
            probing = self._unreachable
            if probing and time.monotonic() < self._skip_until:
                return None  # the server failed a probe a moment ago; it already warned
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base}/api/v1{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"loadbell-client/{__version__}",
                **(headers or {}),
            },
        )
        creates = method == "POST" and (path == "/runs" or path.endswith("/reports"))
        creates = creates and IDEMPOTENCY_KEY not in (headers or {})
        attempts = 1 if probing else self.retries + 1
        timeout = min(self.timeout, PROBE_TIMEOUT) if probing else self.timeout
        problem = "no attempt made"
        unreachable = False
        wait = 0.0  # seconds the server asked for (Retry-After), at most MAX_RETRY_AFTER
        for attempt in range(attempts):
            if attempt:
                time.sleep(max(_BACKOFF[min(attempt - 1, len(_BACKOFF) - 1)], wait))
                wait = 0.0
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    raw = response.read()
                unreachable = False
                answer = json.loads(raw) if raw else {}
                self._reached(True)
                return answer if isinstance(answer, dict) else {"value": answer}
            except urllib.error.HTTPError as exc:
                unreachable = False
                problem = f"{method} {path} answered {exc.code}: {_error_text(exc)}"
                if exc.code != 429 and exc.code < 500:
                    break  # the request itself is wrong; repeating it will not help
                wait = _retry_after(exc.headers.get("Retry-After"))
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # refused, DNS, timeout, reset, not HTTP, bad JSON
                cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                problem = f"cannot reach {self.base} ({cause.__class__.__name__}: {cause})"
                if isinstance(exc, ValueError):
                    unreachable = False
                    break  # it answered (2xx, not JSON): what it did is done
                unreachable = True
                if isinstance(cause, TimeoutError):
                    break  # no answer in time: do not wait that long again, open the breaker
                if creates and not isinstance(cause, ConnectionRefusedError):
                    break  # it may have got the request: a repeat could create a second run
        self._reached(not unreachable, probed=probing)
        self.warn(problem)
        return None

    def _reached(self, reached: bool, *, probed: bool = False) -> None:
        """Close the breaker after an answer; open it after a transport failure (and skip
        calls for a while when a probe failed)."""
        with self._lock:
            if reached:
                self._unreachable = False
                return
            self._unreachable = True
            if probed:
                self._skip_until = time.monotonic() + PROBE_INTERVAL


def _project_id(raw: int | str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        print(
            f"loadbell: LOADBELL_PROJECT must be a project id (a number), not {raw!r}; "
            "using the first project the token can see",
            file=sys.stderr,
        )
        return None


def _retry_after(value: str | None) -> float:
    """A Retry-After in seconds (the form loadbell sends), capped; 0 for none or a date."""
    try:
        return min(max(float(value or 0), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read() or b"{}")
        return str(payload.get("message") or payload)
    except Exception:
        return str(exc.reason)


class Worker(Protocol):
    """A background worker as :func:`thread` (or a gevent greenlet adapter) returns it."""

    def join(self, timeout: float | None = None) -> Any: ...

    def is_alive(self) -> bool: ...


def thread(target: Callable[[], None]) -> Worker:
    """Run ``target`` in a daemon thread: the default way :class:`RunReporter` works."""
    worker = threading.Thread(target=target, name="loadbell-reporter", daemon=True)
    worker.start()
    return worker


class RunReporter:
    """One run, reported from a background worker in call order.

    Methods return at once; ``close`` waits for what is queued, for at most ``timeout``
    seconds. The run id of :meth:`start` is used by every later call; if the run could
    not be created, later calls are skipped quietly (the client already warned).

    ``spawn`` starts the worker: a thread by default. Under gevent pass a greenlet
    spawner (the Locust plugin does), so a Ctrl-C that lands in the worker still reaches
    the main greenlet instead of dying in ``threading``'s exception hook.
    """

    def __init__(self, client: Client, spawn: Callable[[Callable[[], None]], Worker] = thread):
        self.client = client
        self._spawn = spawn
        self.run: dict[str, Any] | None = None
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: Worker | None = None
        self._redo: list[Callable[[], None] | None] = []
        self._closed = False
        self._finished = False

    @property
    def run_id(self) -> int | None:
        return int(self.run["id"]) if self.run else None

    @property
    def run_url(self) -> str | None:
        return str(self.run["url"]) if self.run and self.run.get("url") else None

    def _submit(self, call: Callable[[], None]) -> None:
        if not self.client.enabled or self._closed:
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = self._spawn(self._work)
        self._queue.put(call)

    def _work(self) -> None:
        while True:
            call = self._redo.pop(0) if self._redo else self._queue.get()
            if call is None:
                return
            try:
                self._call(call)
            except KeyboardInterrupt:
                # Under gevent (Locust) Ctrl-C lands in whichever greenlet runs, possibly
                # this one. Let it go on, so Locust still stops; the call is done again
                # later (each call skips the parts that already went through).
                self._redo.insert(0, call)
                raise

    def _call(self, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:  # never let a bug here reach the load test
            self.client.warn(f"internal error while reporting ({exc!r})")

    def _with_run(self, call: Callable[[int], Any]) -> Callable[[], None]:
        def go() -> None:
            if self.run_id is not None:
                call(self.run_id)

        return go

    def start(self, test_name: str, *, project: int | None = None, trigger: str = "manual") -> None:
        """Create the run and move it to Initializing (1)."""
        key = str(uuid.uuid4())  # one run to create, however often the call is made

        def go() -> None:
            if self.run is None:
                self.run = self.client.create_run(
                    test_name, project=project, trigger=trigger, idempotency_key=key
                )
            if self.run_id is not None:
                self.client.update_run(self.run_id, status=1)

        self._submit(go)

    def status(self, status: int) -> None:
        self._submit(self._with_run(lambda rid: self.client.update_run(rid, status=status)))

    def report(self, metrics: dict[str, Any]) -> None:
        self._submit(self._with_run(lambda rid: self.client.report(rid, metrics)))

    def threshold_failed(self, metric: str, expression: str, value: float | None = None) -> None:
        self._submit(
            self._with_run(lambda rid: self.client.threshold_failed(rid, metric, expression, value))
        )

    def finish(self, status: int, result: str | None, metrics: dict[str, Any]) -> None:
        """Send the finishing status with the final metrics, then ``report-available``."""

        def go(rid: int) -> None:
            if not self._finished:
                updated = self.client.update_run(rid, status=status, result=result, metrics=metrics)
                if updated is None:
                    return
                self.run, self._finished = updated, True
            self.client.report_available(rid)

        self._submit(self._with_run(go))

    def close(self, timeout: float = 30.0, *, cancel: threading.Event | None = None) -> bool:
        """Wait up to ``timeout`` seconds for queued calls; ``False`` if some were dropped.

        Setting ``cancel`` (e.g. from a signal handler) stops the wait early.
        """
        if self._closed:
            return True
        self._closed = True
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        self._queue.put(None)
        while (left := deadline - time.monotonic()) > 0:
            if cancel is not None and cancel.is_set():
                return False
            if self._thread.is_alive():
                self._thread.join(min(0.1, left))
                continue
            # Done (it took the None), or died early (an interrupted greenlet): whatever is
            # left goes from here.
            if self._redo:
                call = self._redo.pop(0)
            else:
                try:
                    call = self._queue.get_nowait()
                except queue.Empty:
                    return True
            if call is not None:
                self._call(call)
        self.client.warn(f"gave up waiting for the server after {timeout:.0f} s")
        return False
