"""The events every chat kind must render, as the store would freeze them (store/context.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from loadbell.domain.events import EventType
from loadbell.values import Message

RUN_URL = "https://loadbell.example.com/runs/42"

ORG = {"id": 1, "name": "Acme"}
PROJECT = {"id": 7, "name": "Web shop"}
LOAD_TEST = {"id": 12, "name": "checkout"}

METRICS: dict[str, Any] = {
    "requests": 15012,
    "rps": 50.04,
    "avg_ms": 245.7,
    "p95_ms": 480.0,
    "error_rate": 0.0012,
    "apdex": 0.93,
    "vus_max": 100,
    "duration_s": 300.0,
    "thresholds": [
        {"metric": "http_req_duration", "expression": "p(95)<500", "ok": True},
        {"metric": "http_req_failed", "expression": "rate<0.01", "ok": True},
    ],
}
FAILED_THRESHOLDS = [
    {"metric": "http_req_duration", "expression": "p(95)<500", "ok": True},
    {"metric": "http_req_failed", "expression": "rate<0.01", "ok": False},
]
# 200 thresholds, every third failed, with long names: more than any message can list.
MANY_THRESHOLDS = [
    {"metric": f"group_{i:03d}_" + "x" * 60, "expression": f"p(99)<{i}", "ok": i % 3 != 0}
    for i in range(200)
]


def run(
    status: int, status_text: str, result: str | None, metrics: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": 42,
        "status": status,
        "status_text": status_text,
        "result": result,
        "trigger": "manual",
        "user_id": 1,
        "user_name": "Ada Lovelace",
        "created_at": "2025-07-03T14:30:00+00:00",
        "started_at": "2025-07-03T14:30:05+00:00",
        "ended_at": "2025-07-03T14:35:05+00:00" if status >= 3 else None,
        "duration_s": 300.0 if status >= 3 else None,
        "metrics": metrics,
        "url": RUN_URL,
    }


def context(
    *,
    project: dict[str, Any] | None = PROJECT,
    load_test: dict[str, Any] | None = LOAD_TEST,
    run_: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "organization": ORG,
        "project": project,
        "load_test": load_test,
        "run": run_,
        "extra": extra or {},
    }


def with_thresholds(thresholds: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's figures when ``rate<0.01`` failed: 3.12 % of the requests failed."""
    return {**copy.deepcopy(METRICS), "error_rate": 0.0312, "apdex": 0.81, "thresholds": thresholds}


# case name -> (event, context)
CASES: dict[str, tuple[EventType, dict[str, Any]]] = {
    # a run that finished and passed every threshold
    "finished_passed": (
        EventType.TEST_FINISHED,
        context(run_=run(3, "Finished", "passed", METRICS)),
    ),
    # finished, but one threshold failed: the run failed
    "finished_failed": (
        EventType.TEST_FINISHED,
        context(run_=run(3, "Finished", "failed", with_thresholds(FAILED_THRESHOLDS))),
    ),
    # stopped by a person halfway: partial figures
    "aborted": (
        EventType.TEST_FINISHED,
        context(run_=run(5, "Aborted by user", "failed", {"requests": 120, "vus_max": 10})),
    ),
    # ran out of time
    "timed_out": (
        EventType.TEST_FINISHED,
        context(run_=run(4, "Timed out", "failed", {})),
    ),
    "starting": (EventType.TEST_STARTING, context(run_=run(1, "Initializing", None, {}))),
    "started": (EventType.TEST_STARTED, context(run_=run(2, "Running", None, {}))),
    # a live threshold was crossed while the run goes on
    "threshold_failed": (
        EventType.TEST_THRESHOLD_FAILED,
        context(
            run_=run(2, "Running", None, {"vus": 50, "requests": 4000}),
            extra={"threshold": {"metric": "http_req_duration", "expression": "p(95)<500"}},
        ),
    ),
    # figures so far, while running
    "intermediate": (
        EventType.TEST_REPORT_INTERMEDIATE,
        context(run_=run(2, "Running", None, {"vus": 50, "requests": 4000, "avg_ms": 200.0})),
    ),
    "report_available": (
        EventType.TEST_REPORT_AVAILABLE,
        context(run_=run(3, "Finished", "failed", with_thresholds(FAILED_THRESHOLDS))),
    ),
    "load_test_created": (EventType.LOAD_TEST_CREATED, context()),
    "load_test_updated": (
        EventType.LOAD_TEST_UPDATED,
        context(extra={"changes": {"name": ["checkout-old", "checkout"]}}),
    ),
    "load_test_deleted": (EventType.LOAD_TEST_DELETED, context()),
    "project_created": (EventType.PROJECT_CREATED, context(load_test=None)),
    "project_updated": (
        EventType.PROJECT_UPDATED,
        context(load_test=None, extra={"changes": {"name": ["Shop", "Web shop"]}}),
    ),
    "project_deleted": (EventType.PROJECT_DELETED, context(load_test=None)),
    # the test hook of an organization channel: no project at all
    "test_hook": (
        EventType.TEST_NOTIFICATION_CHANNEL,
        context(project=None, load_test=None),
    ),
    # more thresholds than any chat message can hold
    "many_thresholds": (
        EventType.TEST_FINISHED,
        context(run_=run(3, "Finished", "failed", with_thresholds(MANY_THRESHOLDS))),
    ),
    # names that try to format, mention or overflow
    "hostile_names": (
        EventType.TEST_FINISHED,
        context(
            project={"id": 7, "name": "<!channel> & @everyone *bold* " + "p" * 170},
            load_test={"id": 12, "name": "<script>alert(1)</script> " + "t" * 175},
            run_=run(3, "Finished", "failed", with_thresholds(FAILED_THRESHOLDS)),
        ),
    ),
}


def message(case: str) -> Message:
    event, ctx = CASES[case]
    return Message(
        delivery_id="5f0c6d8e-3b7a-4c1e-9a52-0d4be7c1a9f3",
        event_id=1042,
        event_type=event,
        occurred_at=datetime(2025, 7, 3, 14, 35, 5, tzinfo=UTC),
        context=copy.deepcopy(ctx),
        public_url="https://loadbell.example.com",
    )
