"""The run metrics document: the figures integrations report and channels show.

Every key is optional; channels show what is present and skip the rest. Units are in the
names. Integrations (k6, Locust, generic) fill it; the API stores it as given, merged key
by key with what a run already has.

    {
      "requests": 1500,            # total requests
      "rps": 50.2,                 # throughput, requests per second
      "avg_ms": 245.7,             # average response time
      "p95_ms": 480.0,             # 95th percentile response time
      "error_rate": 0.06,          # failed / total, 0..1
      "apdex": 0.85,               # 0..1
      "apdex_t_ms": 500,           # the Apdex threshold T used
      "vus": 10,                   # virtual users now (intermediate reports)
      "vus_max": 100,              # most virtual users reached
      "duration_s": 300.0,         # how long the test ran
      "checks": {"passes": 10, "fails": 0},
      "thresholds": [{"metric": "http_req_duration", "expression": "p(95)<500", "ok": true}]
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class Threshold(TypedDict):
    metric: str
    expression: str
    ok: bool


class Metrics(TypedDict, total=False):
    requests: int
    rps: float
    avg_ms: float
    p95_ms: float
    error_rate: float
    apdex: float
    apdex_t_ms: float
    vus: int
    vus_max: int
    duration_s: float
    checks: dict[str, int]
    thresholds: list[Threshold]


def failed_thresholds(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [t for t in metrics.get("thresholds") or [] if not t.get("ok", True)]
