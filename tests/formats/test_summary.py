"""The summary every human-readable format words: figures and thresholds of odd documents."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.formats.summary import Severity, figures, summarize
from loadbell.values import Message

FINAL_FIGURES = [
    ("Requests", "15,012"),
    ("Throughput", "50.0 req/s"),
    ("Avg response", "245.7 ms"),
    ("p95 response", "612.3 ms"),
    ("Error rate", "3.12 %"),
    ("Apdex", "0.81 (T = 500 ms)"),  # the score with the T it was measured against
    ("Max VUs", "100"),
]


def _finished(metrics: Any) -> Message:
    message = samples.sample_message(EventType.TEST_FINISHED)
    context = copy.deepcopy(dict(message.context))
    context["run"]["metrics"] = metrics
    return Message(
        delivery_id=message.delivery_id,
        event_id=message.event_id,
        event_type=message.event_type,
        occurred_at=message.occurred_at,
        context=context,
        public_url=message.public_url,
    )


def test_numbers_read_as_before() -> None:
    """Figures of the documented shape keep their labels, units and digits."""
    assert figures(samples.FINAL_METRICS) == FINAL_FIGURES


@pytest.mark.parametrize(
    ("odd", "label"),
    [
        ({"rps": "fast"}, "Throughput"),  # the figure
        ({"rps": "50.04"}, "Throughput"),  # a number written as text
        ({"error_rate": None}, "Error rate"),
        ({"apdex": True}, "Apdex"),
        ({"avg_ms": {"value": 1}}, "Avg response"),
        ({"p95_ms": float("nan")}, "p95 response"),
        ({"requests": 10**400}, "Requests"),  # beyond a float
    ],
)
def test_an_odd_figure_is_left_out_and_the_others_stay(odd: dict[str, Any], label: str) -> None:
    """Only the odd figure's line goes; every other figure reads as before."""
    shown = figures({**samples.FINAL_METRICS, **odd})
    assert shown == [f for f in FINAL_FIGURES if f[0] != label]


def test_max_vus_that_is_no_number_falls_back_to_vus() -> None:
    """An odd vus_max reads as a missing one: the current VUs show instead."""
    assert figures({"vus_max": "lots", "vus": 10}) == [("VUs", "10")]


def test_odd_duration_falls_back_to_the_run_wall_time() -> None:
    """The run's status times show, labelled; a figure that is no number never does."""
    message = _finished({"duration_s": "5 min"})
    message.context["run"]["duration_s"] = None
    assert "Duration" not in dict(summarize(message).facts)
    message.context["run"]["duration_s"] = 300.0
    assert dict(summarize(message).facts)["Duration"] == "300.0 s (status times)"


def test_the_load_tests_own_duration_wins_over_the_status_times() -> None:
    """A 15 s test whose client reported at the end: 15 s, not loadbell's 0.1 s."""
    message = _finished({"duration_s": 15.0})
    message.context["run"]["duration_s"] = 0.1
    assert dict(summarize(message).facts)["Duration"] == "15.0 s"


def test_thresholds_list_and_count_agree_on_odd_entries() -> None:
    """Entries that are no object are skipped; the list and the text count the same
    failures, an entry without a true ok among them."""
    summary = summarize(
        _finished(
            {
                "thresholds": [
                    "x",
                    None,
                    {"metric": "http_req_failed", "expression": "rate<0.01", "ok": True},
                    {"metric": "checks"},
                ]
            }
        )
    )
    assert summary.thresholds == [("http_req_failed: rate<0.01", True), ("checks: ?", False)]
    assert summary.text.endswith("— 1 threshold(s) failed")


def test_channel_disabled_says_which_channel_and_why() -> None:
    """channel.disabled is an error naming the channel and its reason, linked to the
    channel, with no run facts."""
    summary = summarize(samples.sample_message(EventType.CHANNEL_DISABLED))
    assert summary.severity is Severity.ERROR
    assert summary.title == "Channel disabled"
    assert summary.text.startswith("Channel disabled: ops webhook (webhook) — disabled after 20")
    assert summary.link == "http://localhost:8000/channels/7"
    assert summary.facts == []
