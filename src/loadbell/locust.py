"""The Locust plugin: every test start and stop becomes a loadbell run.

Turn it on with ``import loadbell.locust`` in a locustfile, or ``-f locustfile.py`` plus
the plugin's path (``python -c 'import loadbell.locust as m; print(m.__file__)'``).
Options (each falls back to its environment variable): ``--loadbell-url``
(``LOADBELL_URL``), ``--loadbell-token``, ``--loadbell-project``, ``--loadbell-test``,
``--loadbell-trigger``, ``--loadbell-apdex-t`` (ms, default 500),
``--loadbell-report-interval`` (s, default 60) and ``--loadbell-max-fail-ratio``.

Lifecycle (headless and web UI alike): ``test_start`` creates the run (Initializing),
``spawning_complete`` makes it Running, and an intermediate report goes out every
interval. The final report is built in ``quitting``, when a master has the workers' last
stats; a run stopped from the web UI (the process goes on) is closed a few seconds after
``test_stop``, once the workers' next reports are in.

Outcome: Ctrl-C or SIGTERM during a run → Aborted by user; an unhandled exception in the
test code (it stops the run: a shape's ``tick``, an event listener, a greenlet) → Aborted
by script error; a fail ratio above ``--loadbell-max-fail-ratio`` → Finished, failed, and
exit code 3. With that option set, failures within the ratio no longer make Locust exit 1.
Without it the result follows Locust's own exit code: any failure → failed.

Apdex is exact: counted from every ``request`` event (a failed request is frustrated), on
the workers in distributed mode, shipped with ``report_to_master`` and summed on the
master. Workers stay silent. Percentiles are Locust's (bucketed: 204 ms shows as 200).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust import events
from locust import log as locust_log
from locust.env import Environment
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, Runner, WorkerRunner

from loadbell.client import Client, RunReporter, Worker
from loadbell.domain.statuses import RunResult, RunStatus
from loadbell.integrations.apdex import Apdex

FAIL_RATIO_EXIT_CODE = 3  # the same as locust-plugins' --check-fail-ratio
_APDEX_KEY = "loadbell_apdex"
_ACTIVE_STATES = ("spawning", "running", "stopping", "cleanup")


_WARNED: set[str] = set()


def _lenient(
    flag: str,
    envvar: str,
    convert: Callable[[str], Any],
    default: Any,
    rule: Callable[[Any], str | None] = lambda value: None,
) -> Callable[[str], Any]:
    """An option type whose bad value stops Locust only when typed on its command line.

    The same value from the environment (set once for a whole CI pipeline, say) or a
    config file prints a warning naming the variable and falls back to ``default``: a
    notification setting never keeps the load test from running.
    """

    def parse(text: str) -> Any:
        try:
            value = convert(text)
            problem = rule(value)
        except ValueError as exc:
            problem = str(exc) or f"not a valid value: {text!r}"
        if problem is None:
            return value
        if any(arg == flag or arg.startswith(flag + "=") for arg in sys.argv[1:]):
            raise argparse.ArgumentTypeError(problem)
        shown = "unset" if default is None else default
        source = envvar if os.environ.get(envvar) == text else f"{flag} (config file)"
        warning = (
            f"loadbell: ignoring {source}={text!r} ({problem}); {flag} keeps its default ({shown})"
        )
        if warning not in _WARNED:  # Locust may parse its arguments more than once
            _WARNED.add(warning)
            print(warning, file=sys.stderr, flush=True)
        return default

    return parse


def _trigger(text: str) -> str:
    if text not in ("manual", "scheduled"):
        raise ValueError(f"{text!r} is not one of 'manual', 'scheduled'")
    return text


def _positive(value: float) -> str | None:
    return None if value > 0 else f"{value:g} is not above 0"


def _ratio(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"{value:g} is not between 0 and 1"


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    # Options of a group stay out of the web UI's form: the token must not be shown there.
    group = parser.add_argument_group("loadbell", "Report each run to a loadbell server")
    group.add_argument(
        "--loadbell-url", env_var="LOADBELL_URL", default="", help="loadbell server URL"
    )
    group.add_argument(
        "--loadbell-token",
        env_var="LOADBELL_TOKEN",
        default="",
        help="loadbell API token",
    )
    group.add_argument(
        "--loadbell-project",
        env_var="LOADBELL_PROJECT",
        default="",
        help="project id (default: the first one the token sees)",
    )
    group.add_argument(
        "--loadbell-test",
        env_var="LOADBELL_TEST",
        default="",
        help="load test name (default: the locustfile's name)",
    )
    group.add_argument(
        "--loadbell-trigger",
        env_var="LOADBELL_TRIGGER",
        type=_lenient("--loadbell-trigger", "LOADBELL_TRIGGER", _trigger, "manual"),
        default="manual",
        choices=["manual", "scheduled"],
        help="how the run was started",
    )
    group.add_argument(
        "--loadbell-apdex-t",
        env_var="LOADBELL_APDEX_T",
        type=_lenient("--loadbell-apdex-t", "LOADBELL_APDEX_T", float, 500.0, _positive),
        default=500.0,
        help="Apdex threshold T in ms (default 500)",
    )
    group.add_argument(
        "--loadbell-report-interval",
        env_var="LOADBELL_REPORT_INTERVAL",
        type=_lenient(
            "--loadbell-report-interval", "LOADBELL_REPORT_INTERVAL", float, 60.0, _positive
        ),
        default=60.0,
        help="seconds between intermediate reports (default 60; at least 1)",
    )
    group.add_argument(
        "--loadbell-max-fail-ratio",
        env_var="LOADBELL_MAX_FAIL_RATIO",
        type=_lenient("--loadbell-max-fail-ratio", "LOADBELL_MAX_FAIL_RATIO", float, None, _ratio),
        default=None,
        help=f"fail the run (exit code {FAIL_RATIO_EXIT_CODE}) above this ratio of failures",
    )


class _GreenletWorker:
    """The reporter's worker as a plain greenlet. A ``threading.Thread`` (a greenlet too,
    under monkey-patching) would swallow a KeyboardInterrupt that lands in it, and Locust
    would never see the Ctrl-C; a greenlet's hands it on to the main greenlet."""

    def __init__(self, target: Any) -> None:
        self.greenlet = gevent.spawn(target)

    def join(self, timeout: float | None = None) -> Any:
        return self.greenlet.join(timeout)

    def is_alive(self) -> bool:
        return not self.greenlet.dead


def _spawn(target: Any) -> Worker:
    return _GreenletWorker(target)


class _Counter:
    """Apdex counts of this process, from the ``request`` event."""

    def __init__(self, t_ms: float) -> None:
        self.apdex = Apdex(t_ms)

    def on_request(
        self, response_time: float | None = None, exception: Any = None, **_: Any
    ) -> None:
        self.apdex.add(float(response_time or 0.0), exception is not None)


class _Reporter:
    """On a local runner or a master: one loadbell run per test start."""

    def __init__(self, environment: Environment, client: Client, counter: _Counter) -> None:
        self.env = environment
        self.client = client
        self.counter = counter
        options: Any = environment.parsed_options
        self.project = client.project
        self.test_name = options.loadbell_test or _locustfile_name(options)
        self.trigger = options.loadbell_trigger
        self.interval = max(1.0, float(options.loadbell_report_interval))
        self.max_fail_ratio: float | None = options.loadbell_max_fail_ratio
        self.headless = bool(getattr(options, "headless", False))
        self.distributed = isinstance(environment.runner, MasterRunner)
        self.run: RunReporter | None = None
        self.started = 0.0
        self.running_sent = False
        self.stop_seen = False
        self.interrupted = False
        self.vus_max = 0
        self._ticker: gevent.Greenlet | None = None
        self._closer: gevent.Greenlet | None = None

    # -- events ------------------------------------------------------------------------------

    def on_test_start(self, **_: Any) -> None:
        if self.run is not None:
            self.finish()
        self.counter.apdex.reset()
        self.run = RunReporter(self.client, _spawn)
        self.run.start(self.test_name, project=self.project, trigger=self.trigger)
        self.started = time.time()
        self.running_sent = self.stop_seen = self.interrupted = False
        self.vus_max = 0
        self._ticker = gevent.spawn(self._tick)

    def on_spawning_complete(self, user_count: int = 0, **_: Any) -> None:
        self.vus_max = max(self.vus_max, int(user_count))
        if self.run is not None and not self.running_sent:
            self.running_sent = True
            self.run.status(int(RunStatus.RUNNING))

    def on_worker_report(self, client_id: str = "", data: Any = None, **_: Any) -> None:
        counts = (data or {}).get(_APDEX_KEY)
        if counts:
            self.counter.apdex.merge(counts)

    def on_test_stop(self, **_: Any) -> None:
        self.stop_seen = True
        if self.run is None or self.headless:
            return  # quitting follows and closes the run
        # Web UI: the process goes on. Close the run once the workers' next reports are in.
        grace = WORKER_REPORT_INTERVAL + 1.0 if self.distributed else 0.0
        self._closer = gevent.spawn_later(grace, self.finish)

    def on_quitting_early(self, **_: Any) -> None:
        """Runs before the runner's own quitting listener: has the run been stopped yet?"""
        if self.run is not None and not self.stop_seen:
            runner = self.env.runner
            self.interrupted = runner is not None and runner.state in _ACTIVE_STATES

    def on_quitting(self, **_: Any) -> None:
        """Runs last: a master has the workers' final stats by now."""
        if self.run is not None:
            self.finish()

    # -- reporting ---------------------------------------------------------------------------

    def _tick(self) -> None:
        while True:
            gevent.sleep(self.interval)
            runner = self.env.runner
            if self.run is None or runner is None or runner.state not in ("spawning", "running"):
                return
            self.vus_max = max(self.vus_max, runner.user_count)
            self.run.report(self.metrics(live=True))

    def metrics(self, *, live: bool) -> dict[str, Any]:
        total = self.env.stats.total
        out: dict[str, Any] = {
            "requests": int(total.num_requests),
            "rps": round(float(total.total_rps), 3),
            "error_rate": round(float(total.fail_ratio), 6),
            "duration_s": round(time.time() - self.started, 3),
        }
        if total.num_requests:
            out["avg_ms"] = round(float(total.avg_response_time), 3)
            out["p95_ms"] = float(total.get_response_time_percentile(0.95) or 0)
        runner = self.env.runner
        if live and runner is not None:
            out["vus"] = int(runner.user_count)
        if self.vus_max:
            out["vus_max"] = self.vus_max
        out.update(self.counter.apdex.metrics())
        if self.max_fail_ratio is not None:
            out["thresholds"] = [
                {
                    "metric": "fail_ratio",
                    "expression": f"fail_ratio<={self.max_fail_ratio:g}",
                    "ok": total.fail_ratio <= self.max_fail_ratio,
                }
            ]
        return out

    def outcome(self) -> tuple[RunStatus, RunResult]:
        runner = self.env.runner
        total = self.env.stats.total
        if self.interrupted:
            return RunStatus.ABORTED_BY_USER, RunResult.FAILED
        if locust_log.unhandled_greenlet_exception:  # since the last run was closed
            return RunStatus.ABORTED_BY_SCRIPT_ERROR, RunResult.FAILED
        exceptions = bool(runner is not None and runner.exceptions)
        if self.max_fail_ratio is not None:
            if total.fail_ratio > self.max_fail_ratio:
                if self.env.process_exit_code is None:
                    self.env.process_exit_code = FAIL_RATIO_EXIT_CODE
                return RunStatus.FINISHED, RunResult.FAILED
            if self.env.process_exit_code is None and not exceptions:
                self.env.process_exit_code = 0  # failures within the ratio are accepted
            return RunStatus.FINISHED, RunResult.FAILED if exceptions else RunResult.PASSED
        failed = bool(total.num_failures) or exceptions
        return RunStatus.FINISHED, RunResult.FAILED if failed else RunResult.PASSED

    def finish(self) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        for greenlet in (self._ticker, self._closer):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        status, result = self.outcome()
        _take_script_errors()
        run.finish(int(status), result.value, self.metrics(live=False))
        run.close(timeout=30)
        if run.run_url:  # on stderr: --json keeps stdout to itself
            print(f"loadbell: run {run.run_id}: {run.run_url}", file=sys.stderr, flush=True)


def _locustfile_name(options: Any) -> str:
    files = [f.strip() for f in str(getattr(options, "locustfile", "") or "").split(",")]
    names = [os.path.basename(f) for f in files if f and os.path.basename(f) != "locust.py"]
    return names[0] if names else "locust test"


@events.init.add_listener
def _on_init(environment: Environment, runner: Runner | None = None, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or not hasattr(options, "loadbell_url"):
        return
    counter = _Counter(float(options.loadbell_apdex_t))
    environment.events.request.add_listener(counter.on_request)
    if isinstance(runner, WorkerRunner):
        _silent_worker(environment, counter)
        return
    client = Client(options.loadbell_url, options.loadbell_token, options.loadbell_project or None)
    if not client.enabled:
        return
    reporter = _Reporter(environment, client, counter)
    ev = environment.events
    ev.test_start.add_listener(reporter.on_test_start)
    ev.spawning_complete.add_listener(reporter.on_spawning_complete)
    ev.worker_report.add_listener(reporter.on_worker_report)
    ev.test_stop.add_listener(reporter.on_test_stop)
    # quitting fires in reverse order of registration. The runner registered its own
    # listener (a master's stops the workers and waits for their last stats) before this:
    # on_quitting_early runs before it, on_quitting (registered at import) after it.
    ev.quitting.add_listener(reporter.on_quitting_early)
    _REPORTERS.append(reporter)


def _silent_worker(environment: Environment, counter: _Counter) -> None:
    """Workers only count Apdex and ship the counts with their stats to the master."""

    def on_test_start(**_: Any) -> None:
        # The master's --loadbell-* values reach the worker with each spawn message, before
        # test_start: count with the master's T, which its report names.
        options: Any = environment.parsed_options
        t_ms = getattr(options, "loadbell_apdex_t", None)
        if isinstance(t_ms, (int, float)) and t_ms > 0:
            counter.apdex.t_ms = float(t_ms)
        counter.apdex.reset()

    def on_report(client_id: str = "", data: Any = None, **_: Any) -> None:
        data[_APDEX_KEY] = counter.apdex.counts()
        counter.apdex.reset()

    environment.events.test_start.add_listener(on_test_start)
    environment.events.report_to_master.add_listener(on_report)


_REPORTERS: list[_Reporter] = []
_script_errors_taken = False


def _take_script_errors() -> None:
    """Clear Locust's flag for unhandled exceptions once a run has been judged by it.

    The flag is process-wide and never reset by Locust: left alone, one error would mark
    every later web-UI run in this process as a script error. ``_give_back_script_errors``
    sets it again before Locust picks its exit code, so that stays Locust's own.
    """
    global _script_errors_taken
    if locust_log.unhandled_greenlet_exception:
        _script_errors_taken = True
        locust_log.unhandled_greenlet_exception = False


def _give_back_script_errors() -> None:
    if _script_errors_taken:
        locust_log.unhandled_greenlet_exception = True


@events.quitting.add_listener
def _on_quitting(environment: Environment, **kwargs: Any) -> None:
    for reporter in _REPORTERS:
        if reporter.env is environment:
            reporter.on_quitting(**kwargs)
    _give_back_script_errors()  # Locust decides its exit code right after this event
