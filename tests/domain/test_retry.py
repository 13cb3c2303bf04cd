"""The retry policy: seed 004's schedule (1, 2, 4 s, capped at 10 s) and its overrides."""

from __future__ import annotations

from typing import Any

import pytest

from loadbell.domain.retry import LIMITS, RetryPolicy, validate_overrides


def test_defaults_follow_seed_004() -> None:
    """Four attempts, 1 s base doubling, 10 s cap, 10 s per-attempt timeout."""
    policy = RetryPolicy()
    assert policy.as_dict() == {
        "max_attempts": 4,
        "base_delay": 1.0,
        "factor": 2.0,
        "max_delay": 10.0,
        "timeout": 10.0,
    }


@pytest.mark.parametrize(
    ("attempts_made", "wait"),
    [
        (1, 1.0),  # after the first failure
        (2, 2.0),
        (3, 4.0),
        (4, 8.0),  # only reached with max_attempts > 4
        (5, 10.0),  # 16 capped at 10
        (9, 10.0),
    ],
)
def test_backoff_formula(attempts_made: int, wait: float) -> None:
    """delay(n) = min(base * factor ** (n - 1), max_delay)."""
    assert RetryPolicy().delay(attempts_made) == wait


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        (0.0, 0.0),  # "now"
        (3.0, 3.0),  # honoured, even above the computed 1 s
        (0.5, 0.5),  # honoured below it too
        (10.0, 10.0),
        (120.0, 10.0),  # capped
        (None, 1.0),  # absent: the formula
    ],
)
def test_retry_after_replaces_the_wait_within_the_cap(
    retry_after: float | None, wait: float
) -> None:
    """A receiver's Retry-After replaces the computed wait, never beyond max_delay."""
    assert RetryPolicy().delay(1, retry_after) == wait


@pytest.mark.parametrize(("made", "done"), [(1, False), (2, False), (3, False), (4, True)])
def test_exhausted_after_four_attempts(made: int, done: bool) -> None:
    """The fourth failed attempt is the last one."""
    assert RetryPolicy().exhausted(made) is done


def test_overrides_replace_only_given_values() -> None:
    """A channel's overrides change what they name and keep the rest."""
    policy = RetryPolicy().with_overrides({"base_delay": 0.2, "max_attempts": 2})
    assert policy.base_delay == 0.2
    assert policy.max_attempts == 2
    assert policy.max_delay == 10.0
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]
    assert policy.exhausted(2)


def test_worked_example_with_six_attempts() -> None:
    """The docstring's example: with six attempts the waits go 1, 2, 4, 8, 10 s."""
    policy = RetryPolicy(max_attempts=6)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 10]
    assert not policy.exhausted(5) and policy.exhausted(6)


def test_valid_overrides_pass_through() -> None:
    """Values inside the bounds are accepted unchanged."""
    raw = {"max_attempts": 6, "base_delay": 0.2, "factor": 1.5, "max_delay": 30, "timeout": 2}
    assert validate_overrides(raw) == raw


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        ({"retries": 3}, "retry.retries", "unknown setting"),  # a key that does not exist
        ({"max_attempts": 0}, "retry.max_attempts", "out of range"),  # below the bound
        ({"max_attempts": 21}, "retry.max_attempts", "use 1 to 20"),  # above the bound
        ({"max_attempts": 2.5}, "retry.max_attempts", "whole number"),  # not an integer
        ({"base_delay": "1"}, "retry.base_delay", "must be a number"),  # a string
        ({"timeout": True}, "retry.timeout", "must be a number"),  # a boolean
        ({"timeout": 0.1}, "retry.timeout", "out of range"),  # too short to be useful
        ({"factor": 0.5}, "retry.factor", "out of range"),  # would shrink the waits
        ({"max_delay": -1}, "retry.max_delay", "out of range"),
    ],
)
def test_invalid_overrides_name_the_field(raw: dict[str, Any], field: str, hint: str) -> None:
    """Each refused override names its field and the accepted range."""
    with pytest.raises(ValueError) as info:
        validate_overrides(raw)
    message = str(info.value)
    assert message.startswith(f"{field}:"), message
    assert hint in message


def test_every_limit_is_a_policy_field() -> None:
    """Every overridable key exists on the policy, so with_overrides cannot break."""
    for key in LIMITS:
        assert hasattr(RetryPolicy(), key)
