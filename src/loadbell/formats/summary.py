"""What every human-readable format says about an event: severity, title, one-line text and
the key figures. Chat kinds (Slack, Teams, Discord, HipChat, Mattermost, email) render this
in their own markup, so wording stays the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from loadbell.domain import regression
from loadbell.domain.events import EventType
from loadbell.domain.metrics import readable, run_duration
from loadbell.domain.statuses import RunStatus
from loadbell.values import Message


class Severity(StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Summary:
    severity: Severity
    title: str
    text: str
    facts: list[tuple[str, str]] = field(default_factory=list)  # (label, value), in order
    thresholds: list[tuple[str, bool]] = field(default_factory=list)  # (expression, ok)
    link: str | None = None


def severity(message: Message) -> Severity:
    event = message.event_type
    run = message.context.get("run") or {}
    if event in (EventType.TEST_THRESHOLD_FAILED, EventType.TEST_REGRESSED):
        return Severity.WARNING
    if event is EventType.CHANNEL_DISABLED:
        return Severity.ERROR
    if event is EventType.TEST_FINISHED:
        if run.get("status") == int(RunStatus.FINISHED) and run.get("result") != "failed":
            return Severity.SUCCESS
        return Severity.ERROR
    if event is EventType.TEST_REPORT_AVAILABLE and run.get("result") == "failed":
        return Severity.ERROR
    return Severity.INFO


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def apdex(metrics: Mapping[str, Any]) -> str:
    """``0.85 (T = 500 ms)``: the score means little without the threshold T it was
    measured against, so T goes beside it when the metrics say which."""
    shown = _fmt(float(metrics["apdex"]), "", 2)
    t_ms = metrics.get("apdex_t_ms")
    if t_ms is None:
        return shown
    return f"{shown} (T = {float(t_ms):,.6g} ms)"


def figures(metrics: Any, comparison: Any = None) -> list[tuple[str, str]]:
    """The key figures as (label, value), from the run's metrics document as stored:
    a figure that is not a number is left out (``domain.metrics.readable``). With the
    run's ``comparison`` (``domain/regression.py``), a compared figure ends with its change,
    e.g. ``312.0 ms (+22.8 % vs run #41)``."""
    metrics = readable(metrics)
    compared = comparison if isinstance(comparison, Mapping) else {}

    def vs(figure: str, shown: str) -> str:
        change = regression.delta(compared, figure) if compared else None
        return f"{shown} {change}" if change else shown

    out: list[tuple[str, str]] = []
    if "requests" in metrics:
        out.append(("Requests", _fmt(metrics["requests"])))
    if "rps" in metrics:
        out.append(("Throughput", vs("rps", _fmt(float(metrics["rps"]), " req/s"))))
    if "avg_ms" in metrics:
        out.append(("Avg response", vs("avg_ms", _fmt(float(metrics["avg_ms"]), " ms"))))
    if "p95_ms" in metrics:
        out.append(("p95 response", vs("p95_ms", _fmt(float(metrics["p95_ms"]), " ms"))))
    if "error_rate" in metrics:
        out.append(
            ("Error rate", vs("error_rate", _fmt(float(metrics["error_rate"]) * 100, " %", 2)))
        )
    if "apdex" in metrics:
        out.append(("Apdex", vs("apdex", apdex(metrics))))
    if "vus_max" in metrics:
        out.append(("Max VUs", _fmt(metrics["vus_max"])))
    elif "vus" in metrics:
        out.append(("VUs", _fmt(metrics["vus"])))
    return out


_TITLES: dict[EventType, str] = {
    EventType.TEST_STARTING: "Load test starting",
    EventType.TEST_STARTED: "Load test running",
    EventType.TEST_REPORT_INTERMEDIATE: "Intermediate report",
    EventType.TEST_REPORT_AVAILABLE: "Report available",
    EventType.TEST_THRESHOLD_FAILED: "Threshold crossed",
    EventType.TEST_REGRESSED: "Load test regressed",
    EventType.LOAD_TEST_CREATED: "Load test created",
    EventType.LOAD_TEST_UPDATED: "Load test updated",
    EventType.LOAD_TEST_DELETED: "Load test deleted",
    EventType.PROJECT_CREATED: "Project created",
    EventType.PROJECT_UPDATED: "Project updated",
    EventType.PROJECT_DELETED: "Project deleted",
    EventType.TEST_NOTIFICATION_CHANNEL: "Test notification from loadbell",
    EventType.CHANNEL_DISABLED: "Channel disabled",
}


def comparison_of(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's comparison with its baseline when it has one of the stored shape."""
    comparison = run.get("comparison")
    if isinstance(comparison, Mapping) and isinstance(comparison.get("figures"), Mapping):
        return dict(comparison)
    return None


def summarize(message: Message) -> Summary:
    ctx = message.context
    run = ctx.get("run") or {}
    project = (ctx.get("project") or {}).get("name", "?")
    test = (ctx.get("load_test") or {}).get("name")
    sev = severity(message)
    event = message.event_type
    if event is EventType.TEST_FINISHED:
        status = RunStatus(run["status"])
        verdict = "passed" if sev is Severity.SUCCESS else "failed"
        title = (
            f"Load test {verdict}"
            if status is RunStatus.FINISHED
            else f"Load test {status.text.lower()}"
        )
    else:
        title = _TITLES[event]
    subject = f"{test} in {project}" if test else project
    channel = ctx.get("channel") or {}
    if event is EventType.CHANNEL_DISABLED:
        subject = f"{channel.get('name', '?')} ({channel.get('kind', '?')})"
    text = (
        f"{title}: {subject}"
        if event is not EventType.TEST_NOTIFICATION_CHANNEL
        else ("This is a test message: the channel is set up correctly.")
    )
    facts: list[tuple[str, str]] = []
    metrics = readable(run.get("metrics"))
    comparison = comparison_of(run)
    if run:
        facts.append(
            (
                "Status",
                f"{run['status_text']}" + (f" ({run['result']})" if run.get("result") else ""),
            )
        )
        facts.append(("Trigger", str(run.get("trigger", "?"))))
        if run.get("user_name"):
            facts.append(("Started by", str(run["user_name"])))
        # The load test's own duration, not loadbell's status times: a client that sends
        # its status changes at the end makes those 0.1 s for a 15 s run.
        duration = run_duration(run)
        if duration is not None:
            shown = _fmt(duration.seconds, " s")
            facts.append(("Duration", shown if duration.reported else f"{shown} (status times)"))
        if comparison:
            facts.append(("Baseline", f"run #{comparison.get('baseline_run_id')}"))
        facts.extend(figures(metrics, comparison))
    thresholds = [
        (f"{t['metric']}: {t['expression']}", t["ok"]) for t in metrics.get("thresholds", [])
    ]
    extra = ctx.get("extra") or {}
    if event is EventType.TEST_THRESHOLD_FAILED and extra.get("threshold"):
        th = extra["threshold"]
        text += f" — {th.get('metric')}: {th.get('expression')}"
    if event is EventType.TEST_REGRESSED and comparison:
        worse = regression.regressed_figures(comparison)
        text += " — " + ", ".join(filter(None, (regression.describe(comparison, f) for f in worse)))
    if event is EventType.CHANNEL_DISABLED:
        text += f" — {channel.get('disabled_reason') or 'it kept failing'}"
        text += "; enable it again once its endpoint works"
    failed = sum(1 for _, ok in thresholds if not ok)
    if event is EventType.TEST_FINISHED and failed:
        text += f" — {failed} threshold(s) failed"
    link = run.get("url") or channel.get("url")
    return Summary(sev, title, text, facts, thresholds, link)
