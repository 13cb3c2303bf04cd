"""The comparison of a run's figures with its baseline's (domain/regression.py)."""

from __future__ import annotations

from typing import Any

import pytest

from loadbell.domain.regression import (
    DEFAULT_TOLERANCES,
    change_pct,
    compare,
    delta,
    describe,
    regressed_figures,
    tolerances,
)

D = DEFAULT_TOLERANCES


@pytest.mark.parametrize(
    ("figure", "value", "baseline", "tolerance", "regressed"),
    [
        # p95 and avg: higher is worse, by more than the per cent
        ("p95_ms", 312.0, 254.0, D, True),  # +22.8 % > 20 %
        ("p95_ms", 300.0, 254.0, D, False),  # +18.1 %
        ("p95_ms", 120.0, 100.0, D, False),  # exactly +20 %: not over the tolerance
        ("p95_ms", 100.0, 254.0, D, False),  # faster is never a regression
        ("avg_ms", 130.0, 100.0, D, True),  # +30 %
        ("avg_ms", 130.0, 100.0, {**D, "avg_pct": 50.0}, False),  # a wider tolerance
        ("avg_ms", 1.0, 0.0, D, True),  # from 0: any rise is over a per-cent tolerance
        # error_rate: higher is worse, by more than the percentage points
        ("error_rate", 0.025, 0.01, D, True),  # +1.5 pp > 1.0 pp
        ("error_rate", 0.02, 0.01, D, False),  # exactly +1.0 pp (float noise ignored)
        ("error_rate", 0.0, 0.05, D, False),  # fewer errors
        # apdex: lower is worse, by more than the drop
        ("apdex", 0.80, 0.90, D, True),  # -0.10 > 0.05
        ("apdex", 0.86, 0.90, D, False),  # -0.04
        ("apdex", 0.95, 0.90, D, False),  # better
        # rps: lower is worse, by more than the per cent
        ("rps", 70.0, 100.0, D, True),  # -30 %
        ("rps", 85.0, 100.0, D, False),  # -15 %
        ("rps", 200.0, 100.0, D, False),  # more throughput
        # null turns the check off; the figure is still shown
        ("p95_ms", 999.0, 100.0, {**D, "p95_pct": None}, False),
        ("error_rate", 0.5, 0.0, {**D, "error_rate_pp": None}, False),
        ("apdex", 0.1, 0.9, {**D, "apdex_drop": None}, False),
        ("rps", 1.0, 100.0, {**D, "rps_pct": None}, False),
    ],
)
def test_direction_and_tolerance(
    figure: str, value: float, baseline: float, tolerance: dict[str, Any], regressed: bool
) -> None:
    """Each figure regresses only in its worse direction and only beyond its tolerance."""
    out = compare({figure: value}, {figure: baseline}, 41, tolerance)
    assert out["figures"][figure]["regressed"] is regressed
    assert out["regressed"] is regressed
    assert out["figures"][figure]["value"] == value
    assert out["figures"][figure]["baseline"] == baseline


def test_the_issue_example() -> None:
    """p95 312 against 254 is +22.8 %, regressed, and reads as the issue shows it."""
    out = compare({"p95_ms": 312.0}, {"p95_ms": 254.0}, 41, D)
    assert out == {
        "baseline_run_id": 41,
        "figures": {
            "p95_ms": {"value": 312.0, "baseline": 254.0, "change_pct": 22.8, "regressed": True}
        },
        "regressed": True,
    }
    assert describe(out, "p95_ms") == "p95 312 ms (+22.8 % vs run #41)"
    assert delta(out, "p95_ms") == "(+22.8 % vs run #41)"
    assert regressed_figures(out) == ["p95_ms"]


@pytest.mark.parametrize(
    ("ours", "theirs", "compared"),
    [
        ({"p95_ms": 1.0}, {}, []),  # missing in the baseline
        ({}, {"p95_ms": 1.0}, []),  # missing in the run
        ({"p95_ms": "fast"}, {"p95_ms": 1.0}, []),  # not a number
        ({"p95_ms": True}, {"p95_ms": 1.0}, []),  # a boolean is no figure
        ("not a document", {"p95_ms": 1.0}, []),  # a document that is not an object
        (  # only the figures both have, in the catalog's order
            {"rps": 10, "avg_ms": 5, "requests": 100},
            {"rps": 10, "avg_ms": 4, "p95_ms": 9, "requests": 90},
            ["avg_ms", "rps"],
        ),
    ],
)
def test_only_figures_both_runs_have_are_compared(
    ours: Any, theirs: Any, compared: list[str]
) -> None:
    """A figure missing or unreadable on either side is left out, not compared with 0."""
    out = compare(ours, theirs, 7, D)
    assert list(out["figures"]) == compared


def test_change_of_a_zero_baseline_has_no_ratio() -> None:
    """A baseline of 0 has no per-cent change; the message shows the difference instead."""
    assert change_pct(5.0, 0.0) is None
    assert change_pct(90.0, 100.0) == -10.0
    out = compare({"error_rate": 0.03}, {"error_rate": 0.0}, 3, D)
    assert out["figures"]["error_rate"]["change_pct"] is None
    assert out["figures"]["error_rate"]["regressed"] is True  # +3 pp
    assert describe(out, "error_rate") == "errors 3.00 % (+3.00 pp vs run #3)"
    out = compare({"rps": 5.0}, {"rps": 0.0}, 3, D)
    assert describe(out, "rps") == "throughput 5 req/s (+5 req/s vs run #3)"


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, D),  # nothing stored: the defaults
        ({}, D),
        ({"p95_pct": 50}, {**D, "p95_pct": 50.0}),  # one changed, the rest default
        ({"rps_pct": None}, {**D, "rps_pct": None}),  # null: that check off
        ({"unknown": 1}, D),  # a name loadbell does not know is ignored
    ],
)
def test_tolerances(stored: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    """Stored tolerances replace the defaults one by one."""
    assert tolerances(stored) == expected


def test_describe_units() -> None:
    """Each figure reads in its own unit, improvements with a minus sign."""
    out = compare(
        {"avg_ms": 90.5, "apdex": 0.8, "rps": 45.0, "error_rate": 0.02},
        {"avg_ms": 100.0, "apdex": 0.9, "rps": 50.0, "error_rate": 0.01},
        9,
        D,
    )
    assert describe(out, "avg_ms") == "avg 90.5 ms (-9.5 % vs run #9)"
    assert describe(out, "apdex") == "Apdex 0.80 (-11.1 % vs run #9)"
    assert describe(out, "rps") == "throughput 45 req/s (-10.0 % vs run #9)"
    assert describe(out, "error_rate") == "errors 2.00 % (+1.00 pp vs run #9)"
    assert describe(out, "p95_ms") is None  # not compared
