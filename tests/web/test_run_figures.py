"""The run page's key figures read the stored metrics document as notifications do."""

from __future__ import annotations

from loadbell.domain.metrics import readable
from loadbell.web.runs import figures


def test_odd_figures_are_left_out_of_the_run_page() -> None:
    """A figure or a check count that is not a number is left out, not a failed page."""
    stored = {"requests": 10, "rps": "fast", "checks": {"passes": "ten", "fails": 1}}
    shown = dict(figures(readable(stored)))
    assert shown["Requests"] == "10"
    assert "Throughput" not in shown and not any("fast" in v for v in shown.values())
    assert shown["Checks"] == "0 passed, 1 failed"
