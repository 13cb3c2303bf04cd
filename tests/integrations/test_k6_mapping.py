"""What the wrapper knows about k6, without running it: exit codes, summary export, live
metrics, threshold expressions and the command line."""

from __future__ import annotations

from typing import Any

import pytest

from loadbell.domain.statuses import RunResult, RunStatus
from loadbell.integrations import k6
from loadbell.integrations.apdex import Apdex

F, P = RunResult.FAILED, RunResult.PASSED


@pytest.mark.parametrize(
    ("code", "abort_on_fail", "status", "result"),
    [
        (0, False, RunStatus.FINISHED, P),  # passed
        (99, False, RunStatus.FINISHED, F),  # thresholds failed at the end
        (99, True, RunStatus.ABORTED_BY_THRESHOLD, F),  # abortOnFail stopped it early
        (100, False, RunStatus.TIMED_OUT, F),  # setup() timeout
        (101, False, RunStatus.TIMED_OUT, F),  # teardown() timeout
        (102, False, RunStatus.TIMED_OUT, F),  # generic timeout
        (103, False, RunStatus.ABORTED_BY_USER, F),  # stopped through the REST API
        (104, False, RunStatus.ABORTED_BY_SCRIPT_ERROR, F),  # invalid config or threshold
        (105, False, RunStatus.ABORTED_BY_USER, F),  # SIGINT / SIGTERM
        (107, False, RunStatus.ABORTED_BY_SCRIPT_ERROR, F),  # exception in init/setup
        (108, False, RunStatus.ABORTED_BY_SCRIPT_ERROR, F),  # exec.test.abort()
        (110, False, RunStatus.FINISHED, F),  # exec.test.fail()
        (97, False, RunStatus.ABORTED_BY_SYSTEM, F),  # cloud run failed: not ours
        (106, False, RunStatus.ABORTED_BY_SYSTEM, F),  # REST API port busy
        (109, False, RunStatus.ABORTED_BY_SYSTEM, F),  # Go panic
        (255, False, RunStatus.ABORTED_BY_SYSTEM, F),  # bad flag, missing script
        (137, False, RunStatus.ABORTED_BY_SYSTEM, F),  # SIGKILL (128 + 9)
        (0, True, RunStatus.FINISHED, P),  # the marker alone changes nothing
    ],
)
def test_exit_code_table(
    code: int, abort_on_fail: bool, status: RunStatus, result: RunResult
) -> None:
    """Each k6 exit code maps to the status and result of docs/integrations.md."""
    assert k6.status_for_exit(code, aborted_by_threshold=abort_on_fail) == (status, result)


# Shapes as k6 v1.1.0 writes them (--summary-export, legacy format).
SUMMARY: dict[str, Any] = {
    "root_group": {"name": "", "path": "", "id": "x", "groups": {}, "checks": {}},
    "metrics": {
        "http_reqs": {"count": 352, "rate": 27.74},
        "iterations": {"count": 176, "rate": 13.87},
        "http_req_duration": {
            "avg": 21.7,
            "min": 0.15,
            "med": 21.8,
            "max": 47.0,
            "p(90)": 43.1,
            "p(95)": 45.6,
            "thresholds": {"p(95)<500": False, "avg<10": True},
        },
        "vus": {"value": 2, "min": 1, "max": 5},
        "vus_max": {"value": 10, "min": 10, "max": 10},
        "http_req_failed": {
            "passes": 176,
            "fails": 176,
            "value": 0.5,
            "thresholds": {"rate<0.01": True},
        },
        "checks": {"passes": 170, "fails": 6, "value": 0.96, "thresholds": {"rate>0.5": False}},
        "http_req_duration{group:::api}": {
            "avg": 1.0,
            "p(95)": 1.43,
            "thresholds": {"p(95)<1": True},
        },
    },
}


def test_final_metrics_from_summary_export() -> None:
    """The summary export gives every final figure; its threshold booleans mean FAILED."""
    m = k6.final_metrics(SUMMARY)
    assert {k: v for k, v in m.items() if k != "thresholds"} == {
        "requests": 352,
        "rps": 27.74,
        "avg_ms": 21.7,
        "p95_ms": 45.6,
        "error_rate": 0.5,
        "vus_max": 5,
        "checks": {"passes": 170, "fails": 6},
        "duration_s": round(352 / 27.74, 3),
    }
    assert sorted((t["metric"], t["expression"], t["ok"]) for t in m["thresholds"]) == [
        ("checks", "rate>0.5", True),
        ("http_req_duration", "avg<10", False),
        ("http_req_duration", "p(95)<500", True),
        ("http_req_duration{group:::api}", "p(95)<1", False),
        ("http_req_failed", "rate<0.01", False),
    ]


def test_final_metrics_of_an_empty_summary() -> None:
    """A run without HTTP requests still has a (possibly empty) threshold list."""
    assert k6.final_metrics({"metrics": {}}) == {"thresholds": []}


def test_live_metrics_from_rest_api() -> None:
    """/v1/metrics samples, /v1/status VUs and /v1/groups checks make a snapshot."""
    metrics = {
        "http_reqs": {"sample": {"count": 141, "rate": 42.29}},
        "http_req_duration": {"sample": {"avg": 45.39, "p(95)": 53.53, "med": 44.6}},
        "http_req_failed": {"tainted": True, "sample": {"rate": 0.4964}},
        "vus_max": {"sample": {"value": 4}},
    }
    groups = [
        {"attributes": {"checks": None}},
        {"attributes": {"checks": [{"passes": 64, "fails": 2}, {"passes": 1, "fails": 0}]}},
    ]
    snapshot = k6.live_metrics(metrics, {"vus": 2}, k6.check_counts(groups))
    assert snapshot == {
        "requests": 141,
        "rps": 42.29,
        "avg_ms": 45.39,
        "p95_ms": 53.53,
        "error_rate": 0.4964,
        "vus": 2,
        "vus_max": 4,
        "checks": {"passes": 65, "fails": 2},
    }


@pytest.mark.parametrize(
    ("expression", "sample", "verdict"),
    [
        ("p(95)<500", {"p(95)": 480.0}, (True, 480.0)),
        ("p(95) < 500", {"p(95)": 520.0}, (False, 520.0)),  # spaces are fine
        ("p(95.0)<500", {"p(95)": 520.0}, (False, 520.0)),  # k6 writes p(95), not p(95.0)
        ("rate<0.01", {"rate": 0.5}, (False, 0.5)),
        ("count>=10", {"count": 10, "rate": 1.0}, (True, 10.0)),
        ("avg<=200", {"avg": 200.0}, (True, 200.0)),
        ("value==2", {"value": 2}, (True, 2.0)),
        ("max!=0", {"max": 0}, (False, 0.0)),
        ("p(99)<300", {"p(95)": 100.0}, None),  # the live sample has no p(99)
        ("nonsense", {"rate": 1}, None),  # does not parse
    ],
)
def test_evaluate_threshold_expression(
    expression: str, sample: dict[str, Any], verdict: tuple[bool, float] | None
) -> None:
    """A threshold expression is checked against the live sample when it can be."""
    assert k6.evaluate(expression, sample) == verdict


@pytest.mark.parametrize(
    ("expressions", "sample", "reported"),
    [
        # only the failing expression of a tainted metric is reported
        (["p(95)<500", "avg<50"], {"p(95)": 100.0, "avg": 80.0}, [("avg<50", 80.0)]),
        # the failing one cannot be checked live: the uncheckable ones are reported
        (["p(95)<500", "p(99)<50"], {"p(95)": 100.0}, [("p(99)<50", None)]),
        # k6 saw it fail at its last evaluation, the sample recovered since: all of them
        (["rate<0.5"], {"rate": 0.1}, [("rate<0.5", None)]),
        # no expression known (submetric thresholds are not in the JSON stream): the metric
        ([], {"p(95)": 1.0}, [("*", None)]),
    ],
)
def test_crossed_thresholds_of_a_tainted_metric(
    expressions: list[str], sample: dict[str, Any], reported: list[tuple[str, float | None]]
) -> None:
    """k6 marks metrics as tainted; the wrapper names the expressions that crossed."""
    assert k6.crossed("m", expressions, sample) == reported


def test_build_command_adds_address_summary_and_stream() -> None:
    """The wrapper's flags go right after `run`; the user's arguments follow, unchanged."""
    cmd = k6.build_command(
        ["k6", "run", "-e", "A=1", "script.js"],
        address="127.0.0.1:7000",
        summary_path="/t/s.json",
        samples_path="/t/fifo",
    )
    assert cmd.argv == [
        "k6",
        "run",
        "--address",
        "127.0.0.1:7000",
        "--summary-export",
        "/t/s.json",
        "--out",
        "json=/t/fifo",
        "-e",
        "A=1",
        "script.js",
    ]
    assert (cmd.address, cmd.summary_path) == ("127.0.0.1:7000", "/t/s.json")


@pytest.mark.parametrize(
    ("user", "address", "summary"),
    [
        (["--address", "127.0.0.1:9", "s.js"], "127.0.0.1:9", "/t/s.json"),
        (["-a", "127.0.0.1:9", "s.js"], "127.0.0.1:9", "/t/s.json"),
        (["--summary-export=mine.json", "s.js"], "127.0.0.1:7000", "mine.json"),
        (["--address", "", "s.js"], None, "/t/s.json"),  # the user turned the API off
    ],
)
def test_build_command_keeps_the_users_own_flags(
    user: list[str], address: str | None, summary: str
) -> None:
    """A user's --address / --summary-export wins: the wrapper reads those instead."""
    cmd = k6.build_command(
        ["k6", "run", *user], address="127.0.0.1:7000", summary_path="/t/s.json", samples_path=None
    )
    assert (cmd.address, cmd.summary_path) == (address, summary)
    assert cmd.argv.count("--address") + cmd.argv.count("-a") == 1


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["-e", "X=1", "tests/checkout.js"], "checkout.js"),
        (["--vus", "10", "load.ts", "--duration", "1m"], "load.ts"),
        (["archive.tar"], "archive.tar"),
        (["-"], "k6 test"),  # script on stdin
        ([], "k6 test"),
        # a flag's value is never the script, even when it ends in .js
        (["-e", "CONFIG=conf.js", "tests/checkout.js"], "checkout.js"),
        (["--env", "CONFIG=conf.js", "checkout.js"], "checkout.js"),
        (["--config", "k6.config.js", "checkout.js"], "checkout.js"),
        (["-c", "k6.config.js", "checkout.js"], "checkout.js"),
        (["-o", "json=out.js", "checkout.js"], "checkout.js"),
        (["--out", "csv=run.ts", "checkout.js"], "checkout.js"),
        (["--tag", "suite=smoke.js", "checkout.js"], "checkout.js"),
        (["--summary-export", "summary.js", "checkout.js"], "checkout.js"),
        (
            ["--address", "127.0.0.1:6565", "--log-output", "file=k6.js", "checkout.js"],
            "checkout.js",
        ),
        (["--console-output", "console.js", "checkout.js"], "checkout.js"),
        # --flag=value, combined shorthands (pflag), and `--` before the script
        (["--env=CONFIG=conf.js", "checkout.js"], "checkout.js"),
        (["-qe", "CONFIG=conf.js", "checkout.js"], "checkout.js"),
        (["-u10", "-e=A=a.js", "checkout.js"], "checkout.js"),
        (["-q", "--", "checkout.js"], "checkout.js"),
        # boolean flags take no value: what follows is the script
        (["-q", "checkout.js"], "checkout.js"),
        (["--http-debug", "checkout.js"], "checkout.js"),
        (["-e", "A=1", "https://example.com/scripts/checkout"], "checkout"),
        # an unknown flag's value looks positional: the script-like one wins
        (["--future-flag", "x", "checkout.js"], "checkout.js"),
        (["--future-flag", "A=b.js", "checkout.js"], "checkout.js"),
    ],
)
def test_test_name_is_the_script_file_name(argv: list[str], name: str) -> None:
    """The default load test name is the script's file name."""
    assert k6.test_name_of(k6.script_of(argv)) == name


@pytest.mark.parametrize(
    ("argv", "is_k6"),
    [
        (["k6", "run", "s.js"], True),
        (["/usr/local/bin/k6", "run", "s.js"], True),
        (["k6", "cloud", "s.js"], False),  # only `k6 run` is followed live
        (["jmeter", "-n", "-t", "plan.jmx"], False),
    ],
)
def test_is_k6_run(argv: list[str], is_k6: bool) -> None:
    """Only `k6 run` gets the k6 treatment; anything else is a generic command."""
    assert k6.is_k6_run(argv) is is_k6


@pytest.mark.parametrize(
    ("requests", "apdex"),
    [
        ([(100, False)] * 80 + [(1200, False)] * 10 + [(10, True)] * 10, 0.85),  # doc example
        ([(500, False)], 1.0),  # exactly T is satisfied
        ([(2000, False)], 0.5),  # exactly 4 T is tolerating
        ([(2000.1, False)], 0.0),  # above 4 T is frustrated
        ([(1, True)], 0.0),  # a fast failure is frustrated
        ([], None),  # no data, no index
    ],
)
def test_apdex(requests: list[tuple[float, bool]], apdex: float | None) -> None:
    """Apdex with T = 500 ms counts failures as frustrated, whatever their duration."""
    counter = Apdex(500)
    for duration, failed in requests:
        counter.add(duration, failed)
    assert counter.score() == apdex


def test_apdex_counts_merge() -> None:
    """Counts shipped by workers add up on the master."""
    master, worker = Apdex(500), Apdex(500)
    worker.add(100)
    worker.add(900)
    master.add(10, failed=True)
    master.merge(worker.counts())
    assert master.counts() == {"satisfied": 1, "tolerating": 1, "frustrated": 1}
    assert master.metrics() == {"apdex": 0.5, "apdex_t_ms": 500}


@pytest.mark.parametrize(
    ("argv", "env", "path"),
    [
        (["s.js"], {}, None),  # k6's logs on stderr, the default
        (["--log-output", "file=./k6.log", "s.js"], {}, "./k6.log"),
        (["--log-output=file=/tmp/k.log,level=info", "s.js"], {}, "/tmp/k.log"),
        (["--log-output", "none", "s.js"], {}, None),
        (["s.js"], {"K6_LOG_OUTPUT": "file=env.log"}, "env.log"),
        # the flag wins over the environment
        (["--log-output", "stderr", "s.js"], {"K6_LOG_OUTPUT": "file=env.log"}, None),
    ],
)
def test_log_file_of(argv: list[str], env: dict[str, str], path: str | None) -> None:
    """Where k6 writes its logs when not on stderr, so the abortOnFail message is still
    found."""
    assert k6.log_file_of(argv, env) == path
