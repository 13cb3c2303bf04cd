"""What an attempt's outcome means for its delivery: a pure decision, tested without a
database (``tests/delivery/test_decision.py``).

::

    decide(attempt, outcome, policy) -> Decision(status, delay, logged, hold)

- delivered                          -> succeeded
- retry, attempts left               -> pending again, due after ``policy.delay(attempt,
                                        retry_after)`` (a Retry-After within ``max_delay``)
- retry on the last attempt, failed  -> failed; a last retry is logged as failed, with
                                        "(no attempts left: N made)"

``hold`` is how long the destination as a whole should wait before its next message, for
kinds paced per destination: a receiver's Retry-After, within the same ``max_delay`` as the
delivery's own wait (seed 004 caps the wait between retries at 10 s; a channel may raise
its ``max_delay`` on purpose).
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from loadbell.domain.retry import RetryPolicy
from loadbell.store.tables import DELIVERY_FAILED, DELIVERY_PENDING, DELIVERY_SUCCEEDED
from loadbell.values import Outcome, Verdict


class Decision(NamedTuple):
    status: str  # the delivery's new status: succeeded, pending or failed
    delay: float  # seconds until the next attempt (pending only)
    logged: Outcome  # what the attempt log shows
    hold: float  # seconds the whole destination waits (0: no hold)


def decide(attempt: int, outcome: Outcome, policy: RetryPolicy) -> Decision:
    """The decision after attempt number ``attempt`` (1 for the first) of a series."""
    verdict = outcome.verdict
    if verdict is Verdict.DELIVERED:
        return Decision(DELIVERY_SUCCEEDED, 0.0, outcome, 0.0)
    hold = 0.0
    retry_after = outcome.retry_after
    if verdict is Verdict.RETRY and retry_after is not None and retry_after > 0:
        hold = min(retry_after, policy.max_delay)
    if verdict is Verdict.RETRY and not policy.exhausted(attempt):
        return Decision(DELIVERY_PENDING, policy.delay(attempt, retry_after), outcome, hold)
    if verdict is Verdict.RETRY:
        # The log shows what happened to the delivery: this was its last attempt.
        outcome = replace(
            outcome,
            verdict=Verdict.FAILED,
            error=f"{outcome.error or 'retryable failure'} (no attempts left: "
            f"{policy.max_attempts} made)",
        )
    return Decision(DELIVERY_FAILED, 0.0, outcome, hold)
