"""Talking to a k6 process while it runs: its REST API and its ``--out json`` stream.

The stream goes through a FIFO, so nothing is written to disk however long the test runs;
a reader thread keeps up with it and only parses the ``http_req_duration`` points (one line
in about a dozen), which keeps the wrapper's share of the CPU small.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
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


_DURATION_POINT = b'{"metric":"http_req_duration","type":"Point"'
_METRIC_LINE = b'{"type":"Metric"'


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
        # Whole chunks are scanned with bytes.find (C speed): only the duration points and
        # the rare Metric lines reach Python-level parsing.
        rest = b""
        try:
            while True:
                chunk = os.read(self._read_fd, _PIPE_SIZE)
                if not chunk:
                    break
                data = rest + chunk
                end = data.rfind(b"\n") + 1
                rest = data[end:]
                self._scan(data[:end])
        finally:
            os.close(self._read_fd)

    def _scan(self, block: bytes) -> None:
        satisfied = tolerating = frustrated = 0
        t_ms = self.apdex.t_ms
        start = 0
        while (i := block.find(_DURATION_POINT, start)) >= 0:
            start = block.find(b"\n", i) + 1
            point = _point(block[i:start])
            if point is None:
                continue
            duration, failed = point
            if failed or duration > 4 * t_ms:
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
        while (i := block.find(_METRIC_LINE, start)) >= 0:
            start = block.find(b"\n", i) + 1
            self._metric(block[i:start])

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
