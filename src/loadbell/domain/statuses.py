"""Run statuses, results and the transition rule.

The current table is the one of seed 000 (LoadImpact/k6 Cloud v4). The older table of
seed 002 is used only by the ``loadimpact-legacy`` wire format; ``legacy_status`` maps one to
the other (see docs/status-codes.md for the reasoning behind each row).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class RunStatus(IntEnum):
    CREATED = -2
    VALIDATED = -1
    QUEUED = 0
    INITIALIZING = 1
    RUNNING = 2
    FINISHED = 3
    TIMED_OUT = 4
    ABORTED_BY_USER = 5
    ABORTED_BY_SYSTEM = 6
    ABORTED_BY_SCRIPT_ERROR = 7
    ABORTED_BY_THRESHOLD = 8
    ABORTED_BY_LIMIT = 9

    @property
    def text(self) -> str:
        return STATUS_TEXT[self]

    @property
    def is_terminal(self) -> bool:
        return self >= RunStatus.FINISHED


STATUS_TEXT: dict[RunStatus, str] = {
    RunStatus.CREATED: "Created",
    RunStatus.VALIDATED: "Validated",
    RunStatus.QUEUED: "Queued",
    RunStatus.INITIALIZING: "Initializing",
    RunStatus.RUNNING: "Running",
    RunStatus.FINISHED: "Finished",
    RunStatus.TIMED_OUT: "Timed out",
    RunStatus.ABORTED_BY_USER: "Aborted by user",
    RunStatus.ABORTED_BY_SYSTEM: "Aborted by system",
    RunStatus.ABORTED_BY_SCRIPT_ERROR: "Aborted by script error",
    RunStatus.ABORTED_BY_THRESHOLD: "Aborted by threshold",
    RunStatus.ABORTED_BY_LIMIT: "Aborted by limit",
}

TERMINAL_STATUSES = frozenset(s for s in RunStatus if s.is_terminal)


class RunResult(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


class Trigger(StrEnum):
    MANUAL = "manual"
    SCHEDULED = "scheduled"


# Seed 002's older table. Its codes mean different things for the same names, so the
# legacy format needs its own (code, text) pair for every current status.
LEGACY_STATUS_TEXT: dict[int, str] = {
    -1: "Created",
    0: "Queued",
    1: "Initializing",
    2: "Running",
    3: "Finished",
    4: "Timed out",
    5: "Aborting by user",
    6: "Aborted by user",
    7: "Aborting by system",
    8: "Aborted by system",
    9: "Aborted by script error",
    10: "Aborting by threshold",
    11: "Aborted by threshold",
    12: "Failed threshold",
}

_LEGACY_CODE: dict[RunStatus, int] = {
    RunStatus.CREATED: -1,
    RunStatus.VALIDATED: -1,  # the old table has no "Validated"; it was still "Created"
    RunStatus.QUEUED: 0,
    RunStatus.INITIALIZING: 1,
    RunStatus.RUNNING: 2,
    RunStatus.FINISHED: 3,
    RunStatus.TIMED_OUT: 4,
    RunStatus.ABORTED_BY_USER: 6,
    RunStatus.ABORTED_BY_SYSTEM: 8,
    RunStatus.ABORTED_BY_SCRIPT_ERROR: 9,
    RunStatus.ABORTED_BY_THRESHOLD: 11,
    RunStatus.ABORTED_BY_LIMIT: 8,  # the old table has no limit abort; the system aborted it
}


def legacy_status(status: RunStatus, result: RunResult | None) -> tuple[int, str]:
    """Return seed 002's (code, text) for a current status.

    A run that finished with a failed result is "12 Failed threshold" in the old table:
    that is how Load Impact reported a completed run whose thresholds failed.
    """
    if status is RunStatus.FINISHED and result is RunResult.FAILED:
        code = 12
    else:
        code = _LEGACY_CODE[status]
    return code, LEGACY_STATUS_TEXT[code]


class TransitionError(ValueError):
    """A status change that the run's history does not allow (HTTP 409)."""


def check_transition(current: RunStatus, new: RunStatus) -> bool:
    """Decide whether ``current -> new`` is allowed.

    Returns ``True`` when the status changes, ``False`` for an idempotent repeat, and raises
    :class:`TransitionError` for a backward move or any change after a terminal status.
    Statuses only move forward and may skip steps; all terminal statuses rank equal.
    """
    if new == current:
        return False
    if current.is_terminal:
        raise TransitionError(
            f"run already ended with status {int(current)} ({current.text}); "
            "a finished run cannot change status. Start a new run instead."
        )
    if new < current:
        raise TransitionError(
            f"status can only move forward: the run is at {int(current)} ({current.text}) "
            f"and cannot go back to {int(new)} ({new.text})."
        )
    return True


def default_result(status: RunStatus) -> RunResult | None:
    """The result a terminal status implies when the client gives none.

    Finished means passed unless told otherwise; every timeout or abort is a failure.
    """
    if not status.is_terminal:
        return None
    return RunResult.PASSED if status is RunStatus.FINISHED else RunResult.FAILED
