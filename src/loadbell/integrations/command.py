"""Running the load-test command for ``loadbell run``: the child process, signal forwarding,
the stderr pass-through, and the generic mode for any command (JMeter, Gatling, Artillery,
a shell script).

The child runs in its own process group. A Ctrl-C from the terminal then reaches only
loadbell, which forwards it once: k6 treats a *second* SIGINT as "exit now, skip teardown
and the summary", so the child must not get the terminal's copy and ours. The flip side:
the child cannot read from the terminal.

Generic mode: exit 0 → Finished, passed; any other exit → Finished, failed; killed by a
signal, or loadbell forwarded SIGINT/SIGTERM/SIGHUP to it → Aborted by user.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from loadbell.client import RunReporter
from loadbell.domain.statuses import RunResult, RunStatus

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
NOT_FOUND = 127  # the shell's exit code for "command not found"


class Child:
    """The wrapped process.

    With ``tee_stderr``, the child's stderr goes through loadbell byte for byte (so it can
    look for ``marker`` in it). When loadbell's own stderr is a terminal the child writes to
    a pseudo-terminal instead of a pipe, so it keeps its colours and terminal log format:
    what reaches the screen is what the tool would have printed without loadbell.
    """

    def __init__(self, argv: Sequence[str], *, tee_stderr: bool = False, marker: bytes = b""):
        self.argv = list(argv)
        self.tee_stderr = tee_stderr
        self.marker = marker
        self.marker_seen = False
        self.signalled: int | None = None  # the first signal forwarded to the child
        self.proc: subprocess.Popen[bytes] | None = None
        self._tee: threading.Thread | None = None

    def start(self) -> None:
        """Start the child; raises ``OSError`` (e.g. FileNotFoundError) if it cannot run."""
        if not self.tee_stderr:
            self.proc = subprocess.Popen(self.argv, process_group=0)
            return
        read_fd, write_fd = _stderr_channel()
        try:
            self.proc = subprocess.Popen(self.argv, process_group=0, stderr=write_fd)
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._tee = threading.Thread(target=self._copy, args=(read_fd,), daemon=True)
        self._tee.start()

    def _copy(self, fd: int) -> None:
        tail = b""
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError as exc:  # EIO: the pty's other side is closed (Linux)
                    if exc.errno == errno.EINTR:
                        continue
                    break
                if not chunk:
                    break
                _write_all(2, chunk)
                if self.marker and not self.marker_seen:
                    window = tail + chunk
                    if self.marker in window:
                        self.marker_seen = True
                    tail = window[-len(self.marker) :]
        finally:
            os.close(fd)

    def poll(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def wait_for(self, seconds: float) -> None:
        """Sleep up to ``seconds``, returning early when the child exits."""
        assert self.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(seconds)

    def wait(self) -> int:
        assert self.proc is not None
        while True:
            try:
                code = self.proc.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - handlers are installed
                continue
        if self._tee is not None:
            self._tee.join(5)
        return code

    @property
    def running(self) -> bool:
        """Started and not yet reaped."""
        return self.proc is not None and self.proc.returncode is None

    @property
    def killed(self) -> bool:
        """A signal ended the child (it did not exit by itself)."""
        return self.proc is not None and (self.proc.returncode or 0) < 0

    @property
    def exit_code(self) -> int:
        """The child's exit code; 128 + N when signal N killed it (the shell's convention)."""
        assert self.proc is not None and self.proc.returncode is not None
        code = self.proc.returncode
        return 128 - code if code < 0 else code

    def forward(self, signum: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.signalled is None:
            self.signalled = signum
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)


def _stderr_channel() -> tuple[int, int]:
    """(read end for loadbell, write end for the child): a raw pty when our stderr is a
    terminal, else a pipe."""
    if sys.stderr is not None and os.isatty(2):
        master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # no "\n" -> "\r\n": our own terminal does that
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(2, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        return master, slave
    return os.pipe()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return  # our stderr is gone; the child's output has nowhere to go
        view = view[written:]


class SignalRelay:
    """SIGINT, SIGTERM and SIGHUP for the whole of ``loadbell run``, until it exits.

    While the child runs, each one is forwarded to it (:meth:`Child.forward`); one that
    comes before the child started is forwarded when it does. Once the child has exited
    its exit code is decided, so a signal (a second Ctrl-C, a CI runner's SIGTERM while
    the last notifications go out) only sets ``after_exit``: the wrapper stops waiting
    for the server and still exits with the child's code, never 130 or 143.
    """

    def __init__(self) -> None:
        self.child: Child | None = None
        self.pending: int | None = None
        self.after_exit = threading.Event()

    def install(self) -> dict[int, Any]:
        """Handle the signals from now on; returns the previous handlers."""
        return {sig: signal.signal(sig, self._handle) for sig in FORWARDED_SIGNALS}

    def attach(self, child: Child) -> None:
        self.child = child
        if self.pending is not None:
            child.forward(self.pending)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        child = self.child
        if child is None:
            if self.pending is None:
                self.pending = signum
        elif child.running:
            child.forward(signum)
        else:
            self.after_exit.set()


@contextlib.contextmanager
def forwarding(child: Child, relay: SignalRelay | None = None) -> Iterator[None]:
    """Forward SIGINT, SIGTERM and SIGHUP to the child while the block runs: through
    ``relay`` when the caller installed one (its handlers outlive the block), else through
    handlers of our own that the block's end removes."""
    if relay is not None:
        relay.attach(child)
        yield
        return
    own = SignalRelay()
    previous = own.install()
    try:
        own.attach(child)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def read_metrics_file(path: str | None, *, warn: bool = True) -> dict[str, Any] | None:
    """The JSON object in ``path`` (the metrics document), or ``None`` if absent or invalid."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        if warn:
            print(f"loadbell: --metrics-file {path} was not written; no figures", file=sys.stderr)
        return None
    except (OSError, ValueError) as exc:
        if warn:
            print(f"loadbell: --metrics-file {path} is not valid JSON ({exc})", file=sys.stderr)
        return None
    if not isinstance(data, dict):
        if warn:
            print(f"loadbell: --metrics-file {path} must hold a JSON object", file=sys.stderr)
        return None
    return data


def generic_outcome(exit_code: int, aborted: bool) -> tuple[RunStatus, RunResult]:
    """``aborted``: a signal killed the command, or loadbell forwarded one to it."""
    if aborted:
        return RunStatus.ABORTED_BY_USER, RunResult.FAILED
    if exit_code == 0:
        return RunStatus.FINISHED, RunResult.PASSED
    return RunStatus.FINISHED, RunResult.FAILED


def run_generic(
    argv: Sequence[str],
    reporter: RunReporter,
    *,
    test_name: str,
    project: int | None,
    trigger: str,
    report_interval: float,
    metrics_file: str | None,
    relay: SignalRelay | None = None,
) -> int:
    """Run any command and report it. Returns the command's exit code.

    While it runs, a ``--metrics-file`` that appears or changes is sent as an
    intermediate report at most every ``report_interval`` seconds. Signals go through
    ``relay`` when given (see :class:`SignalRelay`).
    """
    child = Child(argv)
    try:
        child.start()
    except OSError as exc:
        print(f"loadbell: cannot run {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return NOT_FOUND
    started = time.monotonic()
    reporter.start(test_name, project=project, trigger=trigger)
    reporter.status(int(RunStatus.RUNNING))
    last_report, last_mtime = started, _mtime(metrics_file)
    with forwarding(child, relay):
        while child.poll() is None:
            child.wait_for(0.2)
            now = time.monotonic()
            if metrics_file and now - last_report >= report_interval:
                mtime = _mtime(metrics_file)
                snapshot = read_metrics_file(metrics_file, warn=False)
                if mtime != last_mtime and snapshot is not None:
                    snapshot.setdefault("duration_s", round(now - started, 3))
                    reporter.report(snapshot)
                    last_mtime, last_report = mtime, now
        child.wait()
    code = child.exit_code
    status, result = generic_outcome(code, child.killed or child.signalled is not None)
    metrics = read_metrics_file(metrics_file) or {}
    metrics.setdefault("duration_s", round(time.monotonic() - started, 3))
    reporter.finish(int(status), result.value, metrics)
    return code


def _mtime(path: str | None) -> float | None:
    if not path:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
