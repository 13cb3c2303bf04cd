"""Run statuses: the seed 000 table, the transition rule, the legacy (seed 002) mapping."""

from __future__ import annotations

import pytest

from loadbell.domain.statuses import (
    LEGACY_STATUS_TEXT,
    RunResult,
    RunStatus,
    TransitionError,
    check_transition,
    default_result,
    legacy_status,
)

S = RunStatus


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (-2, "Created"),
        (-1, "Validated"),
        (0, "Queued"),
        (1, "Initializing"),
        (2, "Running"),
        (3, "Finished"),
        (4, "Timed out"),
        (5, "Aborted by user"),
        (6, "Aborted by system"),
        (7, "Aborted by script error"),
        (8, "Aborted by threshold"),
        (9, "Aborted by limit"),
    ],
)
def test_status_table_matches_seed_000(code: int, text: str) -> None:
    """Every code of the seed 000 table exists with its exact text."""
    assert RunStatus(code).text == text


def test_status_table_has_no_extra_codes() -> None:
    """The enum holds exactly the twelve codes -2..9."""
    assert sorted(int(s) for s in RunStatus) == list(range(-2, 10))


@pytest.mark.parametrize(
    ("current", "new", "changes"),
    [
        (S.CREATED, S.VALIDATED, True),  # one step forward
        (S.CREATED, S.RUNNING, True),  # skipping statuses is allowed
        (S.CREATED, S.ABORTED_BY_LIMIT, True),  # straight to any terminal status
        (S.QUEUED, S.INITIALIZING, True),
        (S.INITIALIZING, S.RUNNING, True),
        (S.RUNNING, S.FINISHED, True),
        (S.RUNNING, S.TIMED_OUT, True),
        (S.RUNNING, S.ABORTED_BY_THRESHOLD, True),
        (S.CREATED, S.CREATED, False),  # a repeat is idempotent
        (S.RUNNING, S.RUNNING, False),
        (S.FINISHED, S.FINISHED, False),  # repeating the terminal status too
        (S.ABORTED_BY_USER, S.ABORTED_BY_USER, False),
    ],
)
def test_allowed_transitions(current: RunStatus, new: RunStatus, changes: bool) -> None:
    """Forward moves change the status; a repeat of the same status does not."""
    assert check_transition(current, new) is changes


@pytest.mark.parametrize(
    ("current", "new", "phrase"),
    [
        (S.RUNNING, S.QUEUED, "only move forward"),  # backward
        (S.INITIALIZING, S.CREATED, "only move forward"),  # backward to the start
        (S.FINISHED, S.RUNNING, "already ended"),  # backward after the end
        (S.FINISHED, S.ABORTED_BY_USER, "already ended"),  # terminal to another terminal
        (S.ABORTED_BY_LIMIT, S.FINISHED, "already ended"),  # a "lower" terminal one
        (S.TIMED_OUT, S.ABORTED_BY_SYSTEM, "already ended"),
    ],
)
def test_refused_transitions_explain_why(current: RunStatus, new: RunStatus, phrase: str) -> None:
    """Backward moves and any change after a terminal status raise with an explanation."""
    with pytest.raises(TransitionError) as info:
        check_transition(current, new)
    message = str(info.value)
    assert phrase in message
    assert current.text in message


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (S.CREATED, None),
        (S.VALIDATED, None),
        (S.QUEUED, None),
        (S.INITIALIZING, None),
        (S.RUNNING, None),
        (S.FINISHED, RunResult.PASSED),  # finished means passed unless told otherwise
        (S.TIMED_OUT, RunResult.FAILED),
        (S.ABORTED_BY_USER, RunResult.FAILED),
        (S.ABORTED_BY_SYSTEM, RunResult.FAILED),
        (S.ABORTED_BY_SCRIPT_ERROR, RunResult.FAILED),
        (S.ABORTED_BY_THRESHOLD, RunResult.FAILED),
        (S.ABORTED_BY_LIMIT, RunResult.FAILED),
    ],
)
def test_default_result(status: RunStatus, result: RunResult | None) -> None:
    """Only terminal statuses imply a result: Finished passes, every abort fails."""
    assert default_result(status) is result


@pytest.mark.parametrize(
    ("status", "result", "code", "text"),
    [
        (S.CREATED, None, -1, "Created"),
        (S.VALIDATED, None, -1, "Created"),  # the old table has no "Validated"
        (S.QUEUED, None, 0, "Queued"),
        (S.INITIALIZING, None, 1, "Initializing"),
        (S.RUNNING, None, 2, "Running"),
        (S.FINISHED, RunResult.PASSED, 3, "Finished"),
        (S.FINISHED, None, 3, "Finished"),
        (S.FINISHED, RunResult.FAILED, 12, "Failed threshold"),  # finished but failed
        (S.TIMED_OUT, RunResult.FAILED, 4, "Timed out"),
        (S.ABORTED_BY_USER, RunResult.FAILED, 6, "Aborted by user"),  # not 5 "Aborting"
        (S.ABORTED_BY_SYSTEM, RunResult.FAILED, 8, "Aborted by system"),  # not 7 "Aborting"
        (S.ABORTED_BY_SCRIPT_ERROR, RunResult.FAILED, 9, "Aborted by script error"),
        (S.ABORTED_BY_THRESHOLD, RunResult.FAILED, 11, "Aborted by threshold"),  # not 10
        (S.ABORTED_BY_LIMIT, RunResult.FAILED, 8, "Aborted by system"),  # no limit abort in 002
    ],
)
def test_legacy_mapping(status: RunStatus, result: RunResult | None, code: int, text: str) -> None:
    """Each current status maps to seed 002's (code, text) pair."""
    assert legacy_status(status, result) == (code, text)


def test_legacy_mapping_covers_every_status() -> None:
    """No current status lacks a legacy code, and every code it yields is in seed 002's table."""
    for status in RunStatus:
        for result in (None, RunResult.PASSED, RunResult.FAILED):
            code, text = legacy_status(status, result)
            assert LEGACY_STATUS_TEXT[code] == text


def test_legacy_table_matches_seed_002() -> None:
    """The older table is seed 002's, -1..12, including "12 Failed threshold"."""
    assert sorted(LEGACY_STATUS_TEXT) == list(range(-1, 13))
    assert LEGACY_STATUS_TEXT[5] == "Aborting by user"
    assert LEGACY_STATUS_TEXT[10] == "Aborting by threshold"
    assert LEGACY_STATUS_TEXT[12] == "Failed threshold"
