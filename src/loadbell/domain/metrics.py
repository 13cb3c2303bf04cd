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

Because the document is stored as given, a stored one may hold anything JSON can say
(``"rps": "fast"``, ``"thresholds": ["x"]``). Every format reads it through
:func:`readable`, the one place that decides what an odd value becomes, so no shape can
make a notification fail to render. docs/templates.md#odd-metrics-documents states the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
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


# The keys whose value is one number.
FIGURES = frozenset(
    {
        "requests",
        "rps",
        "avg_ms",
        "p95_ms",
        "error_rate",
        "apdex",
        "apdex_t_ms",
        "vus",
        "vus_max",
        "duration_s",
    }
)
CHECK_COUNTS = ("passes", "fails")
UNNAMED = "?"  # a threshold's metric or expression that is missing or not a string


def number(value: Any) -> int | float | None:
    """``value`` if it is a finite number, else None. JSON's ``true`` is no count, and an
    integer beyond a float's range would make every format that scales or rounds it raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:  # an int too large for a float
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else UNNAMED


def thresholds(metrics: Any) -> list[dict[str, Any]]:
    """The threshold entries of ``metrics`` that are objects, each with a string ``metric``
    and ``expression`` (:data:`UNNAMED` in place of anything else) and a boolean ``ok``:
    true only when the client said ``true``, since a threshold nobody said passed is not
    reported as passed. Other keys of an entry are kept as given."""
    raw = metrics.get("thresholds") if isinstance(metrics, Mapping) else None
    if not isinstance(raw, list):
        return []
    return [
        {
            **entry,
            "metric": _text(entry.get("metric")),
            "expression": _text(entry.get("expression")),
            "ok": entry.get("ok") is True,
        }
        for entry in raw
        if isinstance(entry, Mapping)
    ]


def readable(metrics: Any) -> dict[str, Any]:
    """``metrics`` as every format reads it: what would not read as the documented shape
    is left out, as if the client had not sent it.

    - a figure (:data:`FIGURES`, and ``checks``' ``passes`` and ``fails``) that is not a
      finite number (:func:`number`) is left out;
    - ``checks`` that is not an object is left out;
    - ``thresholds`` that is not a list is left out; its entries are :func:`thresholds`;
    - keys loadbell does not know are kept as given (templates may use them);
    - a document that is not an object reads as ``{}``.

    A document of the documented shape comes back equal, so numbers render as before.
    """
    if not isinstance(metrics, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in FIGURES:
            if number(value) is not None:
                out[key] = value
        elif key == "checks":
            if isinstance(value, Mapping):
                out[key] = {
                    k: v for k, v in value.items() if k not in CHECK_COUNTS or number(v) is not None
                }
        elif key == "thresholds":
            if isinstance(value, list):
                out[key] = thresholds(metrics)
        else:
            out[key] = value
    return out


def failed_thresholds(metrics: Any) -> list[dict[str, Any]]:
    """The :func:`thresholds` entries not said to have passed."""
    return [t for t in thresholds(metrics) if not t["ok"]]


@dataclass(frozen=True)
class RunDuration:
    """How long a run's load test ran, and where the figure comes from."""

    seconds: float
    # True: the load test's own figure (``metrics.duration_s``, from the k6 or Locust
    # summary). False: loadbell's status times (Running to the end), which measure how
    # quickly the client sent its status changes, not the test: 0.1 s for a 15 s run
    # whose client reported only at the end.
    reported: bool

    @property
    def source(self) -> str:
        return "reported by the load test" if self.reported else "from the status times"


def run_duration(run: Mapping[str, Any]) -> RunDuration | None:
    """The one duration to show for ``run`` (a run as the API and event contexts give
    it): the load test's own ``metrics.duration_s`` when it is a finite number, else the
    run's ``duration_s`` (``ended_at - started_at``), else None."""
    reported = number(readable(run.get("metrics")).get("duration_s"))
    if reported is not None:
        return RunDuration(float(reported), True)
    wall = number(run.get("duration_s"))
    return RunDuration(float(wall), False) if wall is not None else None
