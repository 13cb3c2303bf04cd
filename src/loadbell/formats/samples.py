"""Realistic sample events, for previews and for checking a template when it is saved.

Every event of the catalog gets a context of the shape ``store/context.py`` builds. Run
events use one load test run of 300 s that finished *failed*: one of its two thresholds
failed, so previews show the figures, the thresholds and the failure cue at once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from loadbell.domain.events import EventType
from loadbell.domain.statuses import RunStatus
from loadbell.values import Message

SAMPLE_DELIVERY_ID = "5f0c6d8e-3b7a-4c1e-9a52-0d4be7c1a9f3"
SAMPLE_EVENT_ID = 1042
SAMPLE_OCCURRED_AT = datetime(2025, 7, 3, 14, 35, 0, tzinfo=UTC)
SAMPLE_PUBLIC_URL = "http://localhost:8000"

ORGANIZATION = {"id": 1, "name": "Acme"}
PROJECT = {"id": 7, "name": "Web shop"}
LOAD_TEST = {"id": 12, "name": "checkout-flow"}

FINAL_METRICS: dict[str, Any] = {
    "requests": 15012,
    "rps": 50.04,
    "avg_ms": 245.7,
    "p95_ms": 612.3,
    "error_rate": 0.0312,
    "apdex": 0.81,
    "apdex_t_ms": 500,
    "vus_max": 100,
    "duration_s": 300.0,
    "checks": {"passes": 14543, "fails": 469},
    "thresholds": [
        {"metric": "http_req_duration", "expression": "p(95)<500", "ok": False},
        {"metric": "http_req_failed", "expression": "rate<0.05", "ok": True},
    ],
}

RUNNING_METRICS: dict[str, Any] = {
    "requests": 7406,
    "rps": 49.3,
    "avg_ms": 231.0,
    "p95_ms": 540.2,
    "error_rate": 0.021,
    "vus": 100,
    "vus_max": 100,
}

_RUN_ID = 4217
BASELINE_RUN_ID = 4180

# The sample run against its baseline (domain/regression.py): p95 and errors regressed.
COMPARISON: dict[str, Any] = {
    "baseline_run_id": BASELINE_RUN_ID,
    "figures": {
        "p95_ms": {"value": 612.3, "baseline": 480.0, "change_pct": 27.6, "regressed": True},
        "avg_ms": {"value": 245.7, "baseline": 231.2, "change_pct": 6.3, "regressed": False},
        "error_rate": {"value": 0.0312, "baseline": 0.012, "change_pct": 160.0, "regressed": True},
        "apdex": {"value": 0.81, "baseline": 0.84, "change_pct": -3.6, "regressed": False},
        "rps": {"value": 50.04, "baseline": 51.3, "change_pct": -2.5, "regressed": False},
    },
    "regressed": True,
}


def _run(status: RunStatus, public_url: str) -> dict[str, Any]:
    started = status >= RunStatus.RUNNING
    ended = status.is_terminal
    if status is RunStatus.RUNNING:
        metrics: dict[str, Any] = {"vus": 10}
    elif ended:
        metrics = copy.deepcopy(FINAL_METRICS)
    else:
        metrics = {}
    return {
        "id": _RUN_ID,
        "status": int(status),
        "status_text": status.text,
        "result": "failed" if ended else None,
        "trigger": "manual",
        "user_id": 1,
        "user_name": "Ada Lovelace",
        "created_at": "2025-07-03T14:29:40Z",
        "started_at": "2025-07-03T14:30:00Z" if started else None,
        "ended_at": "2025-07-03T14:35:00Z" if ended else None,
        "duration_s": 300.0 if ended else None,
        "metrics": metrics,
        "url": f"{public_url.rstrip('/')}/runs/{_RUN_ID}",
        "comparison": copy.deepcopy(COMPARISON) if ended else None,
    }


def sample_context(
    event: EventType,
    *,
    organization: Mapping[str, Any] | None = None,
    project: Mapping[str, Any] | None = None,
    public_url: str = SAMPLE_PUBLIC_URL,
) -> dict[str, Any]:
    """The context a real ``event`` would carry, with made-up but plausible values.

    ``organization`` and ``project`` replace the made-up ones (previews use the caller's).
    """
    ctx: dict[str, Any] = {
        "organization": dict(organization or ORGANIZATION),
        "project": dict(project or PROJECT),
        "load_test": None,
        "run": None,
        "extra": {},
    }
    if event is EventType.TEST_NOTIFICATION_CHANNEL:
        ctx["project"] = dict(project) if project else None
        return ctx
    if event is EventType.CHANNEL_DISABLED:
        ctx["project"] = None
        ctx["channel"] = {
            "id": 7,
            "name": "ops webhook",
            "kind": "webhook",
            "project_id": None,
            "consecutive_failures": 20,
            "disabled_reason": "disabled after 20 consecutive failed deliveries since "
            "2025-07-02 14:00 UTC",
            "url": f"{public_url.rstrip('/')}/channels/7",
        }
        return ctx
    if event.value.startswith("project."):
        if event is EventType.PROJECT_UPDATED:
            ctx["extra"] = {"changes": {"name": ["Webshop", ctx["project"]["name"]]}}
        return ctx
    ctx["load_test"] = dict(LOAD_TEST)
    if event.value.startswith("load_test."):
        if event is EventType.LOAD_TEST_UPDATED:
            ctx["extra"] = {"changes": {"name": ["checkout", LOAD_TEST["name"]]}}
        return ctx
    if event is EventType.TEST_STARTING:
        ctx["run"] = _run(RunStatus.INITIALIZING, public_url)
    elif event is EventType.TEST_STARTED:
        ctx["run"] = _run(RunStatus.RUNNING, public_url)
    elif event in (EventType.TEST_REPORT_INTERMEDIATE, EventType.TEST_THRESHOLD_FAILED):
        ctx["run"] = _run(RunStatus.RUNNING, public_url)
        ctx["run"]["metrics"] = copy.deepcopy(RUNNING_METRICS)
        if event is EventType.TEST_THRESHOLD_FAILED:
            ctx["extra"] = {
                "threshold": {
                    "metric": "http_req_duration",
                    "expression": "p(95)<500",
                    "ok": False,
                    "value": 540.2,
                    "severity": "warning",
                }
            }
        else:
            ctx["extra"] = {
                "report": {
                    "id": 31,
                    "at": "2025-07-03T14:32:30+00:00",
                    "metrics": copy.deepcopy(RUNNING_METRICS),
                }
            }
    else:  # test.finished, test.report_available, test.regressed
        ctx["run"] = _run(RunStatus.FINISHED, public_url)
        if event is EventType.TEST_REPORT_AVAILABLE:
            ctx["extra"] = {"report_url": ctx["run"]["url"]}
    return ctx


def sample_message(
    event: EventType,
    *,
    organization: Mapping[str, Any] | None = None,
    project: Mapping[str, Any] | None = None,
    public_url: str = SAMPLE_PUBLIC_URL,
) -> Message:
    return Message(
        delivery_id=SAMPLE_DELIVERY_ID,
        event_id=SAMPLE_EVENT_ID,
        event_type=event,
        occurred_at=SAMPLE_OCCURRED_AT,
        context=sample_context(
            event, organization=organization, project=project, public_url=public_url
        ),
        public_url=public_url,
    )
