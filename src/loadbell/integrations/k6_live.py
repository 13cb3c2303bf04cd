"""Talking to a k6 process while it runs: its REST API and its ``--out json`` stream.

The stream goes through a FIFO, so nothing is written to disk however long the test runs;
a reader thread keeps up with it and only parses the ``http_req_duration`` points (one line
in about a dozen), which keeps the wrapper's share of the CPU small.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from loadbell.integrations.apdex import Apdex

API_TIMEOUT = 2.0  # seconds; k6's API answers from memory, on loopback
_F_SETPIPE_SZ = 1031  # Linux: grow the FIFO so k6 rarely waits on a slow read
_PIPE_SIZE = 1 << 20


class K6Api:
    """The k6 REST API (``/v1/status``, ``/v1/metrics``, ``/v1/groups``). Every call returns
    ``None`` when k6 is not (or no longer) answering: before init ends, and after the run."""

    def __init__(self, address: str) -> None:
        self.base = f"http://{address}"

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.base + path, timeout=API_TIMEOUT) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    def status(self) -> dict[str, Any] | None:
        body = self._get("/v1/status")
        if not isinstance(body, dict):
            return None
        attributes = (body.get("data") or {}).get("attributes")
        return attributes if isinstance(attributes, dict) else None

    def metrics(self) -> dict[str, dict[str, Any]] | None:
        body = self._get("/v1/metrics")
        if not isinstance(body, dict):
            return None
        return {
            str(item.get("id")): item.get("attributes") or {}
            for item in body.get("data") or []
            if isinstance(item, dict)
        }

    def metric(self, name: str) -> dict[str, Any] | None:
        """One metric's attributes: k6 computes only this one's sample (percentiles sort
        every value kept so far, so asking for all metrics costs k6 much more)."""
        body = self._get(f"/v1/metrics/{urllib.parse.quote(name, safe='')}")
        if not isinstance(body, dict):
            return None
        attributes = (body.get("data") or {}).get("attributes")
        return attributes if isinstance(attributes, dict) else None

    def groups(self) -> list[dict[str, Any]] | None:
        body = self._get("/v1/groups")
        if not isinstance(body, dict):
            return None
        data = body.get("data")
        return data if isinstance(data, list) else None


# Needles for bytearray.find. Each ends in a character that is rare in k6's JSON (not `"`),
# which lets the search skip ahead: half the cost of the same text with its closing quote.
_DURATION_POINT = b'{"metric":"http_req_duration","type":"Point'
_METRIC_LINE = b'{"type":"Metric'
# A duration point's value and the first letter of its expected_response tag, matched in
# place. k6 writes time, value, tags in that order and the tags sorted by name (so
# expected_response comes first unless a user tag sorts before it); a line that does not
# match (another layout, a quote inside a tag, no such tag) is parsed whole by orjson.
_DURATION_VALUE = re.compile(
    rb'\{"metric":"http_req_duration","type":"Point","data":\{"time":"[^"]*",'
    rb'"value":([^,}]+),"tags":\{(?:"[^"\\]*":"[^"\\]*",)*?"expected_response":"([tf])'
)
_FALSE = b"f"
_BUFFER_SIZE = 2 * _PIPE_SIZE  # bytes: one read of a full FIFO plus the carried partial line
_NICE = 10  # added to the reader's nice value: it yields the CPU to k6 on a saturated machine


class SampleStream:
    """Reads k6's ``--out json`` NDJSON from a FIFO in a thread and keeps:

    - exact Apdex counts from every ``http_req_duration`` point (a request whose
      ``expected_response`` tag is ``false`` counts as frustrated);
    - each metric's threshold expressions, from the ``Metric`` lines.

    ``open`` must run before k6 starts; ``close`` after k6 exited (it drains what is left).
    """

    def __init__(self, path: str, apdex: Apdex) -> None:
        self.path = path
        self.apdex = apdex
        self.thresholds: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._read_fd = -1
        self._hold_fd = -1
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        os.mkfifo(self.path, 0o600)
        # Open the read end first without blocking, then hold a write end ourselves: the
        # reader never sees EOF before k6 has even opened the FIFO (or if it never does).
        self._read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._hold_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(self._read_fd, True)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._read_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        self._thread = threading.Thread(target=self._read, name="k6-samples", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        if self._hold_fd >= 0:
            os.close(self._hold_fd)
            self._hold_fd = -1
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def snapshot(self) -> Apdex:
        with self._lock:
            return Apdex(self.apdex.t_ms, **self.apdex.counts())

    def _read(self) -> None:
        # On Linux a nice value is per thread: only this reader gives way, not the poll loop.
        with contextlib.suppress(OSError, AttributeError):
            me = threading.get_native_id()
            os.setpriority(
                os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + _NICE)
            )
        # One buffer for the whole run: each read lands after the partial line carried
        # from the previous one, and the complete lines are scanned in place (no copies
        # of the chunk; only the carried tail, usually a few hundred bytes, moves).
        buffer = bytearray(_BUFFER_SIZE)
        view = memoryview(buffer)
        reader = io.FileIO(self._read_fd, "rb", closefd=True)
        filled = 0
        try:
            while True:
                n = reader.readinto(view[filled:])
                if not n:
                    break
                end = filled + n
                lines_end = buffer.rfind(b"\n", 0, end) + 1
                self._scan(buffer, lines_end)
                filled = end - lines_end
                if filled == _BUFFER_SIZE:  # one line longer than the buffer: drop it
                    filled = 0
                elif filled:
                    view[:filled] = view[lines_end:end]
        finally:
            view.release()
            reader.close()

    def _scan(self, block: bytes | bytearray, end: int) -> None:
        """Count the duration points and read the Metric lines in ``block[:end]``."""
        satisfied = tolerating = frustrated = 0
        t_ms = self.apdex.t_ms
        frustrated_above = 4 * t_ms
        find, match = block.find, _DURATION_VALUE.match
        start = 0
        while (i := find(_DURATION_POINT, start, end)) >= 0:
            found = match(block, i, end)
            if found is not None:
                start = found.end()  # the next search skips the rest of the line
                try:
                    duration = float(found[1])
                except ValueError:
                    continue
                failed = found[2] == _FALSE
            else:
                start = find(b"\n", i, end) + 1
                point = _point(bytes(block[i:start]))
                if point is None:
                    continue
                duration, failed = point
            if failed or duration > frustrated_above:
                frustrated += 1
            elif duration > t_ms:
                tolerating += 1
            else:
                satisfied += 1
        with self._lock:
            self.apdex.merge(
                {"satisfied": satisfied, "tolerating": tolerating, "frustrated": frustrated}
            )
        start = 0
        while (i := find(_METRIC_LINE, start, end)) >= 0:
            start = find(b"\n", i, end) + 1
            self._metric(bytes(block[i:start]))

    def _metric(self, line: bytes) -> None:
        try:
            data = orjson.loads(line)["data"]
        except (ValueError, KeyError, TypeError):
            return
        expressions = [str(t) for t in data.get("thresholds") or []]
        if expressions:
            self.thresholds[str(data.get("name"))] = expressions


def _point(line: bytes) -> tuple[float, bool] | None:
    """(duration ms, failed?) of an ``http_req_duration`` point line."""
    try:
        data = orjson.loads(line)["data"]
        duration = float(data["value"])
    except (ValueError, KeyError, TypeError):
        return None
    tags = data.get("tags") or {}
    expected = tags.get("expected_response")
    if expected is not None:
        return duration, expected == "false"
    # The user turned that tag off (--system-tags): fall back on the status.
    status = str(tags.get("status", "200"))
    return duration, not status.isdigit() or int(status) == 0 or int(status) >= 400
