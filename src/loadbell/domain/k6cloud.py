"""Grafana Cloud k6's notification event identifiers, and which run each one names.

Grafana's "Send notifications" page lists eleven identifiers (docs/decisions.md quotes it):
two for a start, nine for an end. Each is a finer cut of one of loadbell's own events, by the
run's trigger (starts) or its status and result (ends):

    test.started.manual       test.started,  trigger manual
    test.started.scheduled    test.started,  trigger scheduled
    test.finished.finished    test.finished, status 3 (Finished), any result
    test.finished.success     test.finished, status 3, result passed
    test.finished.failed      test.finished, status 3, result failed
    test.finished.timed_out   test.finished, status 4   ... and so on to
    test.finished.aborted_limit                 status 9

A run's start or end is named by exactly one identifier (:func:`identifier_for`), the most
specific: a Finished run is ``success`` or ``failed``, never ``finished``, which exists only
as a selection that takes both. :func:`state_of` reads the same table the other way, for a
webhook Grafana sends to loadbell (an inbound source). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from loadbell.domain.events import EventType
from loadbell.domain.statuses import RunResult, RunStatus, Trigger


@dataclass(frozen=True)
class Identifier:
    name: str  # test.finished.failed
    event: EventType  # the loadbell event it narrows
    title: str  # Grafana's "Event name" column, used as event.text


_ALL = (
    Identifier("test.started.manual", EventType.TEST_STARTED, "Test started"),
    Identifier("test.started.scheduled", EventType.TEST_STARTED, "Scheduled test started"),
    Identifier("test.finished.finished", EventType.TEST_FINISHED, "Test finished"),
    Identifier("test.finished.success", EventType.TEST_FINISHED, "Test finished successfully"),
    Identifier("test.finished.failed", EventType.TEST_FINISHED, "Test failed"),
    Identifier("test.finished.timed_out", EventType.TEST_FINISHED, "Test timed out"),
    Identifier("test.finished.aborted_user", EventType.TEST_FINISHED, "Test aborted (by user)"),
    Identifier("test.finished.aborted_system", EventType.TEST_FINISHED, "Test aborted (by system)"),
    Identifier(
        "test.finished.aborted_script_error",
        EventType.TEST_FINISHED,
        "Test aborted (script error)",
    ),
    Identifier(
        "test.finished.aborted_threshold", EventType.TEST_FINISHED, "Test aborted (by threshold)"
    ),
    Identifier("test.finished.aborted_limit", EventType.TEST_FINISHED, "Test aborted (by limit)"),
)

IDENTIFIERS: dict[str, Identifier] = {i.name: i for i in _ALL}

# What Grafana's template context says when no event is specified (the test hook).
ANY_EVENT = "<any>"
ANY_EVENT_TEXT = "Unknown"

FINISHED_ANY = "test.finished.finished"

_STATUSES = {int(s): s for s in RunStatus}

_END_BY_STATUS: dict[RunStatus, str] = {
    RunStatus.TIMED_OUT: "test.finished.timed_out",
    RunStatus.ABORTED_BY_USER: "test.finished.aborted_user",
    RunStatus.ABORTED_BY_SYSTEM: "test.finished.aborted_system",
    RunStatus.ABORTED_BY_SCRIPT_ERROR: "test.finished.aborted_script_error",
    RunStatus.ABORTED_BY_THRESHOLD: "test.finished.aborted_threshold",
    RunStatus.ABORTED_BY_LIMIT: "test.finished.aborted_limit",
}


def identifier_for(
    event: EventType, trigger: str | None, status: int | None, result: str | None
) -> str | None:
    """The one identifier that names this start or end, or None for any other event.

    A Finished run with no result (events stored before results were defaulted) is
    ``test.finished.finished``; with one, ``success`` or ``failed``.
    """
    if event is EventType.TEST_STARTED:
        return "test.started.scheduled" if trigger == Trigger.SCHEDULED else "test.started.manual"
    if event is not EventType.TEST_FINISHED or status is None:
        return None
    if status == RunStatus.FINISHED:
        if result == RunResult.FAILED:
            return "test.finished.failed"
        return "test.finished.success" if result == RunResult.PASSED else FINISHED_ANY
    for code, name in _END_BY_STATUS.items():
        if status == code:
            return name
    return None


def selected(
    chosen: Collection[str],
    event: EventType,
    trigger: str | None,
    status: int | None,
    result: str | None,
) -> bool:
    """True when a channel that chose ``chosen`` wants this start or end."""
    name = identifier_for(event, trigger, status, result)
    if name is None:
        return False
    if name in chosen:
        return True
    # "All tests that end with a Finished run status", whatever their result.
    return status == RunStatus.FINISHED and FINISHED_ANY in chosen


def of_event(event: EventType) -> list[str]:
    """The identifiers that narrow ``event``, in Grafana's order."""
    return [i.name for i in _ALL if i.event is event]


class Mismatch(ValueError):
    """A Grafana body whose identifier, status, result and trigger do not name one run state.
    ``field`` is the body's path of the value at fault (``status``, ``event.type``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RunState:
    """What a Grafana start or end says about its run, in loadbell's terms."""

    event: EventType
    status: RunStatus
    result: RunResult | None  # None for a start
    trigger: Trigger


_RESULTS = {0: RunResult.PASSED, 1: RunResult.FAILED}  # Grafana's test.result


def state_of(identifier: str, status: int, result: int, was_scheduled: bool) -> RunState:
    """The run state a Grafana body names: the inverse of :func:`identifier_for`.

    ``status`` and ``result`` are Grafana's ``test.status`` and ``test.result`` (0 passed,
    1 failed), ``was_scheduled`` its ``test.was_scheduled``. A start puts the run at Running,
    whatever status Grafana reports with it (its own Initializing or Running). An end must
    agree with its identifier: :func:`identifier_for` of the state read back gives the same
    identifier (or ``test.finished.finished`` took a Finished run). Raises :class:`Mismatch`.
    """
    known = IDENTIFIERS.get(identifier)
    if known is None:
        raise Mismatch(
            "event.type",
            f"{identifier!r} is not one of Grafana's event identifiers; "
            f"expected one of: {', '.join(IDENTIFIERS)}",
        )
    code = _STATUSES.get(status)
    if code is None:
        raise Mismatch("status", f"{status} is not a run status code (-2 to 9)")
    outcome = _RESULTS.get(result)
    if outcome is None:
        raise Mismatch(
            "result", f"{result} is not a test result; Grafana sends 0 (passed) or 1 (failed)"
        )
    trigger = Trigger.SCHEDULED if was_scheduled else Trigger.MANUAL
    if known.event is EventType.TEST_STARTED:
        if code.is_terminal:
            raise Mismatch(
                "status",
                f"{identifier} names a start, but status {status} ({code.text}) is an end",
            )
        if identifier_for(known.event, trigger, None, None) != identifier:
            raise Mismatch(
                "test_run.was_scheduled",
                f"{identifier} disagrees with was_scheduled {'yes' if was_scheduled else 'no'}",
            )
        return RunState(known.event, RunStatus.RUNNING, None, trigger)
    if not code.is_terminal:
        raise Mismatch(
            "status",
            f"{identifier} names an end, but status {status} ({code.text}) is not one (3 to 9)",
        )
    named = identifier_for(known.event, trigger, int(code), outcome)
    if named != identifier and not (identifier == FINISHED_ANY and code is RunStatus.FINISHED):
        raise Mismatch(
            "event.type",
            f"{identifier} disagrees with status {status} ({code.text}) and result {result}, "
            f"which Grafana names {named}",
        )
    return RunState(known.event, code, outcome, trigger)
