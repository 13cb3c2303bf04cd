"""The retry decision, a pure function: what an attempt's outcome means for its delivery."""

from __future__ import annotations

import pytest

from loadbell.delivery.decision import decide
from loadbell.domain.retry import RetryPolicy
from loadbell.values import Outcome, Verdict

DEFAULT = RetryPolicy()


@pytest.mark.parametrize(
    ("attempt", "outcome", "status", "delay", "hold"),
    [
        # delivered: done, whatever the attempt
        (1, Outcome(Verdict.DELIVERED, status_code=204), "succeeded", 0.0, 0.0),
        (4, Outcome(Verdict.DELIVERED, status_code=200), "succeeded", 0.0, 0.0),
        # retries follow seed 004: 1, 2, 4 s
        (1, Outcome(Verdict.RETRY, status_code=503), "pending", 1.0, 0.0),
        (2, Outcome(Verdict.RETRY, status_code=503), "pending", 2.0, 0.0),
        (3, Outcome(Verdict.RETRY, error="timed out"), "pending", 4.0, 0.0),
        # the fourth attempt was the last
        (4, Outcome(Verdict.RETRY, status_code=503), "failed", 0.0, 0.0),
        # Retry-After replaces the wait, within max_delay (10 s), and holds the destination
        # for as long
        (1, Outcome(Verdict.RETRY, status_code=429, retry_after=3.0), "pending", 3.0, 3.0),
        (1, Outcome(Verdict.RETRY, status_code=429, retry_after=120.0), "pending", 10.0, 10.0),
        (1, Outcome(Verdict.RETRY, status_code=429, retry_after=0.0), "pending", 0.0, 0.0),
        # on the last attempt nothing waits for the delivery, but the destination is held
        (4, Outcome(Verdict.RETRY, status_code=429, retry_after=120.0), "failed", 0.0, 10.0),
        # a final failure is final at once
        (1, Outcome(Verdict.FAILED, status_code=404), "failed", 0.0, 0.0),
    ],
)
def test_decision_table(
    attempt: int, outcome: Outcome, status: str, delay: float, hold: float
) -> None:
    """Each outcome gives the seed 004 schedule, with Retry-After within the policy's cap."""
    decision = decide(attempt, outcome, DEFAULT)
    assert (decision.status, decision.delay, decision.hold) == (status, delay, hold)


def test_a_channel_may_allow_longer_waits() -> None:
    """A larger max_delay in the channel's policy lets a Retry-After wait longer."""
    patient = DEFAULT.with_overrides({"max_delay": 600.0})
    decision = decide(1, Outcome(Verdict.RETRY, status_code=429, retry_after=120.0), patient)
    assert (decision.delay, decision.hold) == (120.0, 120.0)


def test_the_last_retry_is_logged_as_failed_with_why() -> None:
    """The attempt log shows that the delivery ran out of attempts, not a pending retry."""
    decision = decide(4, Outcome(Verdict.RETRY, status_code=500, error="HTTP 500"), DEFAULT)
    assert decision.logged.verdict is Verdict.FAILED
    assert decision.logged.error == "HTTP 500 (no attempts left: 4 made)"
    assert decision.logged.status_code == 500


def test_what_is_logged_otherwise_is_the_outcome() -> None:
    """Outcomes that are not a last retry are logged as they came."""
    outcome = Outcome(Verdict.RETRY, status_code=503, error="HTTP 503")
    assert decide(1, outcome, DEFAULT).logged is outcome
