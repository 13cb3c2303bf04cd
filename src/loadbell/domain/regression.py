"""Regressions: a finished run's key figures against its baseline run's, pure.

A load test's baseline is a run it pinned, or else its latest passed run
(``services/baselines.py`` picks it). Five figures of the metrics document
(``domain/metrics.py``) are compared, each with its own tolerance:

=============  ===============  ===============================================
figure         tolerance        regressed when (worse is the direction shown)
=============  ===============  ===============================================
``p95_ms``     ``p95_pct``      value > baseline × (1 + p95_pct / 100)
``avg_ms``     ``avg_pct``      value > baseline × (1 + avg_pct / 100)
``error_rate`` ``error_rate_pp`` (value − baseline) × 100 > error_rate_pp
``apdex``      ``apdex_drop``   baseline − value > apdex_drop
``rps``        ``rps_pct``      value < baseline × (1 − rps_pct / 100)
=============  ===============  ===============================================

Worked example with the defaults: baseline p95 254 ms, this run 312 ms: +22.8 %, more than
20 %, so p95 regressed. A tolerance of ``None`` turns its check off: the figure is still
shown, never as regressed. A figure missing (or not a number) on either side is not compared
and not shown. Exactly at the tolerance is not a regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadbell.domain.metrics import number

# figure -> its tolerance's name, in the order messages show them.
TOLERANCE_OF: dict[str, str] = {
    "p95_ms": "p95_pct",
    "avg_ms": "avg_pct",
    "error_rate": "error_rate_pp",
    "apdex": "apdex_drop",
    "rps": "rps_pct",
}
FIGURES = tuple(TOLERANCE_OF)

DEFAULT_TOLERANCES: dict[str, float | None] = {
    "p95_pct": 20.0,
    "avg_pct": 20.0,
    "error_rate_pp": 1.0,
    "apdex_drop": 0.05,
    "rps_pct": 20.0,
}

# Differences are rounded to this many decimals before they meet a tolerance, so that
# 0.02 - 0.01 (1.0000000000000002 percentage points) is not over a tolerance of 1.0.
_DIGITS = 9


def tolerances(stored: Mapping[str, Any] | None) -> dict[str, float | None]:
    """A load test's tolerances: the defaults, with what it stored in their place (a
    stored ``None`` turns that check off)."""
    out = dict(DEFAULT_TOLERANCES)
    for name, value in (stored or {}).items():
        if name in out:
            out[name] = None if value is None else float(value)
    return out


def _regressed(figure: str, value: float, baseline: float, tolerance: float | None) -> bool:
    if tolerance is None:
        return False
    if figure in ("p95_ms", "avg_ms"):
        return round(value - baseline * (1 + tolerance / 100), _DIGITS) > 0
    if figure == "error_rate":
        return round((value - baseline) * 100, _DIGITS) > tolerance
    if figure == "apdex":
        return round(baseline - value, _DIGITS) > tolerance
    # rps: lower is worse
    return round(baseline * (1 - tolerance / 100) - value, _DIGITS) > 0


def change_pct(value: float, baseline: float) -> float | None:
    """The change from ``baseline`` to ``value`` in per cent, to one decimal; None when
    the baseline is 0 (no ratio to show)."""
    if baseline == 0:
        return None
    return round((value - baseline) / abs(baseline) * 100, 1)


@dataclass(frozen=True)
class Figure:
    value: float
    baseline: float
    change_pct: float | None
    regressed: bool


def compare(
    metrics: Any,
    baseline_metrics: Any,
    baseline_run_id: int,
    tolerances_: Mapping[str, float | None],
) -> dict[str, Any]:
    """The comparison a run stores and ``GET /runs/{id}`` returns::

        {"baseline_run_id": 41,
         "figures": {"p95_ms": {"value": 312.0, "baseline": 254.0, "change_pct": 22.8,
                                "regressed": true}, ...},
         "regressed": true}

    ``metrics`` and ``baseline_metrics`` are metrics documents as stored (anything JSON).
    """
    ours = metrics if isinstance(metrics, Mapping) else {}
    theirs = baseline_metrics if isinstance(baseline_metrics, Mapping) else {}
    figures: dict[str, dict[str, Any]] = {}
    for figure in FIGURES:
        value, base = number(ours.get(figure)), number(theirs.get(figure))
        if value is None or base is None:
            continue
        value, base = float(value), float(base)
        tolerance = tolerances_.get(TOLERANCE_OF[figure])
        figures[figure] = {
            "value": value,
            "baseline": base,
            "change_pct": change_pct(value, base),
            "regressed": _regressed(figure, value, base, tolerance),
        }
    return {
        "baseline_run_id": baseline_run_id,
        "figures": figures,
        "regressed": any(f["regressed"] for f in figures.values()),
    }


# How messages name the figures, and their units.
_LABELS: dict[str, tuple[str, str]] = {
    "p95_ms": ("p95", " ms"),
    "avg_ms": ("avg", " ms"),
    "error_rate": ("errors", " %"),
    "apdex": ("Apdex", ""),
    "rps": ("throughput", " req/s"),
}


def _shown(figure: str, value: float) -> str:
    if figure == "error_rate":
        return f"{value * 100:.2f}"
    if figure == "apdex":
        return f"{value:.2f}"
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def delta(comparison: Mapping[str, Any], figure: str) -> str | None:
    """``(+22.8 % vs run #41)`` for one figure of a stored comparison, or None when the
    figure was not compared. The error rate changes in percentage points, as its tolerance
    does (``+1.50 pp``); a baseline of 0 shows the difference instead of a ratio."""
    entry = (comparison.get("figures") or {}).get(figure)
    if not isinstance(entry, Mapping):
        return None
    run = comparison.get("baseline_run_id")
    pct = entry.get("change_pct")
    if figure == "error_rate":
        points = (float(entry.get("value", 0)) - float(entry.get("baseline", 0))) * 100
        change = f"{points:+.2f} pp"
    elif pct is not None:
        change = f"{pct:+.1f} %"
    else:
        unit = _LABELS[figure][1]
        diff = float(entry.get("value", 0)) - float(entry.get("baseline", 0))
        change = f"{'+' if diff >= 0 else '-'}{_shown(figure, abs(diff))}{unit}"
    return f"({change} vs run #{run})"


def describe(comparison: Mapping[str, Any], figure: str) -> str | None:
    """``p95 312 ms (+22.8 % vs run #41)`` for one figure, or None when not compared."""
    entry = (comparison.get("figures") or {}).get(figure)
    change = delta(comparison, figure)
    if change is None or not isinstance(entry, Mapping):
        return None
    label, unit = _LABELS[figure]
    return f"{label} {_shown(figure, float(entry['value']))}{unit} {change}"


def regressed_figures(comparison: Mapping[str, Any]) -> list[str]:
    """The figures of a stored comparison that regressed, in :data:`FIGURES` order."""
    figures = comparison.get("figures") or {}
    return [
        f for f in FIGURES if isinstance(figures.get(f), Mapping) and figures[f].get("regressed")
    ]
