"""auto_disable's validation and thresholds, and how a batch of results becomes health
upserts (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from loadbell.domain import health
from loadbell.domain.health import AutoDisable
from loadbell.store.queue import Completion, HealthRow, health_rows, hour_rows, to_check
from loadbell.values import Outcome, Verdict

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (None, False),  # null turns it off; stored as false (inheritance drops null)
        (False, False),
        ({}, {"after_failures": 20, "after_hours": 24}),  # the defaults fill what is left out
        ({"after_failures": 3}, {"after_failures": 3, "after_hours": 24}),
        ({"after_failures": 1, "after_hours": 0}, {"after_failures": 1, "after_hours": 0}),
        ({"after_hours": 0.5}, {"after_failures": 20, "after_hours": 0.5}),
    ],
)
def test_valid_values(raw: Any, stored: Any) -> None:
    """Each accepted value and what is stored for it."""
    assert health.validate(raw) == stored


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("yes", "config.auto_disable"),  # not an object
        ({"after_failures": 0}, "config.auto_disable.after_failures"),  # below 1
        ({"after_failures": True}, "config.auto_disable.after_failures"),  # a boolean
        ({"after_failures": 2.5}, "config.auto_disable.after_failures"),  # not whole
        ({"after_hours": -1}, "config.auto_disable.after_hours"),  # negative
        ({"after_hours": "1"}, "config.auto_disable.after_hours"),  # a string
        ({"after_days": 1}, "config.auto_disable.after_days"),  # unknown key
    ],
)
def test_refused_values_name_the_field(raw: Any, field: str) -> None:
    """A refused value's message starts with the field it names."""
    with pytest.raises(ValueError) as caught:
        health.validate(raw)
    assert str(caught.value).split(":", 1)[0] == field


def test_thresholds_of_a_config_and_shown_off() -> None:
    """Absent means the defaults, false (stored null) means never; it is shown as null."""
    assert health.of({}) == AutoDisable(20, 24.0)
    assert health.of({"auto_disable": False}) is None
    assert health.shown({"auto_disable": False, "url": "u"}) == {"auto_disable": None, "url": "u"}


@pytest.mark.parametrize(
    ("failures", "first_ago_h", "reached"),
    [
        (20, 24.0, True),  # both hold
        (19, 48.0, False),  # not enough failures
        (25, 23.9, False),  # the first failure is too recent
    ],
)
def test_both_conditions_must_hold(failures: int, first_ago_h: float, reached: bool) -> None:
    """Disabled only with enough failures in a row and the first one old enough."""
    rule = AutoDisable(20, 24.0)
    assert rule.reached(failures, NOW - first_ago_h * 3600, NOW) is reached


def _done(channel: int, status: str, target: str | None = None) -> Completion:
    verdict = Verdict.DELIVERED if status == "succeeded" else Verdict.FAILED
    return Completion(
        delivery_id=1,
        series=1,
        attempt_number=1,
        started_at=datetime.now(UTC),
        outcome=Outcome(verdict),
        status=status,
        next_attempt_at=NOW,
        lease_until=NOW,
        channel_id=channel,
        target=target,
        auto_disable=AutoDisable(2, 0) if status == "failed" else None,
    )


def test_a_batch_gives_one_row_per_channel_and_target() -> None:
    """Failures after the batch's last success count from it (a reset); a retry does not
    count; targets get rows of their own beside the channel's."""
    batch = [
        _done(1, "failed"),
        _done(1, "succeeded"),
        _done(1, "failed"),
        _done(1, "pending"),  # will be retried: not an end
        _done(2, "failed", "#a"),
        _done(2, "succeeded", "#b"),
    ]
    assert health_rows(batch, NOW) == [
        HealthRow(1, "", 1, NOW, NOW, NOW),
        HealthRow(2, "", 0, None, NOW, NOW),
        HealthRow(2, "#a", 1, NOW, None, NOW),
        HealthRow(2, "#b", 0, None, NOW, None),
    ]
    assert set(to_check(batch)) == {1, 2}


def test_a_batch_adds_to_the_hour_of_its_channels() -> None:
    """One hour row per channel: its ended deliveries by outcome; retries do not count."""
    batch = [_done(1, "failed"), _done(1, "succeeded"), _done(1, "pending"), _done(2, "failed")]
    hour = int(NOW // 3600)
    assert hour_rows(batch, NOW) == [(1, hour, 1, 1), (2, hour, 0, 1)]


@pytest.mark.parametrize(
    ("state", "rate", "expected"),
    [
        # every delivery of the day succeeded
        ("healthy", 1.0, "green"),
        # the green threshold itself
        ("healthy", 0.95, "green"),
        # some failures
        ("healthy", 0.9, "amber"),
        # the amber threshold itself
        ("healthy", 0.8, "amber"),
        # mostly failing
        ("healthy", 0.5, "red"),
        # the last delivery failed: never green, whatever the rate
        ("failing", 0.99, "amber"),
        ("failing", 0.1, "red"),
        # no figures: grey, unless the last delivery failed (older than 24 hours)
        ("healthy", None, "grey"),
        ("failing", None, "amber"),
        # disabled for failing is red
        ("disabled", 1.0, "red"),
        ("disabled", None, "red"),
    ],
)
def test_the_badge_colour(state: str, rate: float | None, expected: str) -> None:
    """The success rate's badge colour: green, amber, red, or grey without figures."""
    assert health.colour(state, rate) == expected
