"""The run page's key figures read the stored metrics document as notifications do."""

from __future__ import annotations

from loadbell.domain.metrics import readable
from loadbell.domain.regression import DEFAULT_TOLERANCES, compare
from loadbell.web.runs import comparison_rows, figures


def test_odd_figures_are_left_out_of_the_run_page() -> None:
    """A figure or a check count that is not a number is left out, not a failed page."""
    stored = {"requests": 10, "rps": "fast", "checks": {"passes": "ten", "fails": 1}}
    shown = dict(figures(readable(stored)))
    assert shown["Requests"] == "10"
    assert "Throughput" not in shown and not any("fast" in v for v in shown.values())
    assert shown["Checks"] == "0 passed, 1 failed"


def test_comparison_rows_follow_the_stored_comparison() -> None:
    """The run page's comparison table: compared figures in the catalog's order, with the
    change as notifications word it, and nothing for a run without a comparison."""
    stored = compare(
        {"rps": 50.0, "p95_ms": 312.0, "error_rate": 0.02},
        {"rps": 50.0, "p95_ms": 254.0, "error_rate": 0.005},
        41,
        DEFAULT_TOLERANCES,
    )
    rows = comparison_rows(stored)
    assert [r["label"] for r in rows] == [
        "95th percentile response time",
        "Error rate",
        "Requests per second",
    ]
    assert rows[0] == {
        "label": "95th percentile response time",
        "value": "312.0 ms",
        "baseline": "254.0 ms",
        "change": "+22.8 %",
        "regressed": True,
    }
    assert rows[1]["change"] == "+1.50 pp" and rows[1]["regressed"] is True
    assert rows[2]["change"] == "+0.0 %" and rows[2]["regressed"] is False
    assert comparison_rows(None) == []
    assert comparison_rows({"figures": "odd"}) == []
