"""Grafana Cloud k6's event identifiers: which one names a run's start or end, and which
selections take it."""

from __future__ import annotations

import pytest

from loadbell.domain import k6cloud
from loadbell.domain.events import EventType
from loadbell.domain.filters import RunFacts, matches, validate_filters

STARTED, FINISHED = EventType.TEST_STARTED, EventType.TEST_FINISHED

IDENTIFIER_CASES = [
    # (event, trigger, status, result, identifier)
    (STARTED, "manual", 2, None, "test.started.manual"),  # started from CI or by hand
    (STARTED, "scheduled", 2, None, "test.started.scheduled"),  # started by a schedule
    (FINISHED, "manual", 3, "passed", "test.finished.success"),  # thresholds all passed
    (FINISHED, "scheduled", 3, "failed", "test.finished.failed"),  # a threshold failed
    (FINISHED, "manual", 3, None, "test.finished.finished"),  # no result recorded
    (FINISHED, "manual", 4, "failed", "test.finished.timed_out"),
    (FINISHED, "manual", 5, "failed", "test.finished.aborted_user"),
    (FINISHED, "manual", 6, "failed", "test.finished.aborted_system"),
    (FINISHED, "manual", 7, "failed", "test.finished.aborted_script_error"),
    (FINISHED, "manual", 8, "failed", "test.finished.aborted_threshold"),
    (FINISHED, "manual", 9, "failed", "test.finished.aborted_limit"),
    (FINISHED, "manual", 5, "passed", "test.finished.aborted_user"),  # status decides
    (EventType.TEST_STARTING, "manual", 1, None, None),  # Grafana has no "initializing"
    (EventType.PROJECT_CREATED, None, None, None, None),  # not a run event
]


@pytest.mark.parametrize(("event", "trigger", "status", "result", "expected"), IDENTIFIER_CASES)
def test_identifier_for_each_start_and_end(
    event: EventType, trigger: str | None, status: int | None, result: str | None, expected: str
) -> None:
    """Each start or end is named by the one identifier of Grafana's table it falls under."""
    assert k6cloud.identifier_for(event, trigger, status, result) == expected


def test_the_catalog_is_grafanas_eleven() -> None:
    """The catalog holds exactly the identifiers Grafana's page lists, in its order."""
    assert list(k6cloud.IDENTIFIERS) == [
        "test.started.manual",
        "test.started.scheduled",
        "test.finished.finished",
        "test.finished.success",
        "test.finished.failed",
        "test.finished.timed_out",
        "test.finished.aborted_user",
        "test.finished.aborted_system",
        "test.finished.aborted_script_error",
        "test.finished.aborted_threshold",
        "test.finished.aborted_limit",
    ]


SELECTION_CASES = [
    # (chosen, status, result, wanted)
    (["test.finished.finished"], 3, "passed", True),  # Finished, whatever the result
    (["test.finished.finished"], 3, "failed", True),
    (["test.finished.finished"], 4, "failed", False),  # a timeout is not "Finished"
    (["test.finished.failed"], 3, "passed", False),
    (["test.finished.failed"], 3, "failed", True),
    (["test.finished.failed", "test.finished.timed_out"], 4, "failed", True),
    (["test.finished.failed", "test.finished.timed_out"], 5, "failed", False),
    (["test.finished.aborted_user"], 5, "passed", True),  # an abort with a passed result
    (["test.finished.success"], 3, "failed", False),
]


@pytest.mark.parametrize(("chosen", "status", "result", "wanted"), SELECTION_CASES)
def test_filter_takes_the_chosen_ends_only(
    chosen: list[str], status: int, result: str, wanted: bool
) -> None:
    """A k6cloud_events filter on test.finished passes exactly the ends chosen."""
    filters = validate_filters({"test.finished": {"k6cloud_events": chosen}})
    assert matches(FINISHED, filters, RunFacts("manual", status, result)) is wanted


def test_start_filter_by_trigger() -> None:
    """test.started.scheduled passes scheduled starts and not manual ones."""
    filters = validate_filters({"test.started": {"k6cloud_events": ["test.started.scheduled"]}})
    assert matches(STARTED, filters, RunFacts("scheduled", 2, None))
    assert not matches(STARTED, filters, RunFacts("manual", 2, None))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        # an end's identifier on the start event
        ({"test.started": {"k6cloud_events": ["test.finished.failed"]}}, "test.started"),
        # an identifier Grafana's page keeps commented out ("not in frontend")
        ({"test.finished": {"k6cloud_events": ["test.finished.all"]}}, "test.finished"),
    ],
)
def test_filter_refuses_identifiers_of_another_event(raw: dict[str, object], field: str) -> None:
    """A filter lists only the identifiers of its own event, and the error names them."""
    with pytest.raises(ValueError, match=rf"filters\.{field}\.k6cloud_events: .*use test\."):
        validate_filters(raw)


def test_filter_keeps_grafanas_order_once_each() -> None:
    """The stored list is in Grafana's order, without repeats."""
    clean = validate_filters(
        {"test.finished": {"k6cloud_events": ["test.finished.failed", "test.finished.success"] * 2}}
    )
    assert clean["test.finished"]["k6cloud_events"] == [
        "test.finished.success",
        "test.finished.failed",
    ]


# Grafana's test.result as the body carries it: 0 passed, 1 failed.
_RESULT_CODE = {"passed": 0, "failed": 1}


# What Grafana sends: every named case but the Finished run without a result, which loadbell
# no longer makes (D38) and whose read-back test_finished_finished_takes_either_result covers.
READ_BACK = [c for c in IDENTIFIER_CASES if c[4] is not None and c[4] != k6cloud.FINISHED_ANY]


@pytest.mark.parametrize(("event", "trigger", "status", "result", "expected"), READ_BACK)
def test_state_of_reads_the_table_back(
    event: EventType, trigger: str | None, status: int | None, result: str | None, expected: str
) -> None:
    """Every identifier the table writes reads back as the same run state: one mapping,
    used both ways (a start is Running, whatever status Grafana sends with it)."""
    assert status is not None and trigger is not None
    state = k6cloud.state_of(
        expected, status, _RESULT_CODE.get(result or "passed", 0), trigger == "scheduled"
    )
    assert state.event is event and state.trigger == trigger
    assert int(state.status) == status
    assert state.result == (result if event is FINISHED else None)
    assert (
        k6cloud.identifier_for(state.event, state.trigger, state.status, state.result) == expected
    )


def test_finished_finished_takes_either_result() -> None:
    """test.finished.finished ("all tests that end with a Finished status") is read with the
    result the body gives, and only for status 3."""
    assert k6cloud.state_of("test.finished.finished", 3, 1, False).result == "failed"
    assert k6cloud.state_of("test.finished.finished", 3, 0, False).result == "passed"
    with pytest.raises(k6cloud.Mismatch) as caught:
        k6cloud.state_of("test.finished.finished", 5, 1, False)
    assert caught.value.field == "event.type"


@pytest.mark.parametrize(
    ("identifier", "status", "result", "scheduled", "field"),
    [
        ("test.finished.all", 3, 0, False, "event.type"),  # "not in frontend"
        ("test.ended", 3, 0, False, "event.type"),  # the header table's short example
        ("test.finished.failed", 12, 1, False, "status"),  # seed 002's code, not this table
        ("test.finished.failed", 3, 2, False, "result"),  # result is 0 or 1
        ("test.finished.failed", 2, 1, False, "status"),  # an end must be terminal
        ("test.started.manual", 3, 0, False, "status"),  # a start must not be
        ("test.finished.success", 3, 1, False, "event.type"),  # failed, said success
        ("test.finished.timed_out", 5, 1, False, "event.type"),  # aborted, said timed out
        ("test.started.scheduled", 2, 0, False, "test_run.was_scheduled"),
        ("test.started.manual", 2, 0, True, "test_run.was_scheduled"),
    ],
)
def test_state_of_refuses_what_disagrees(
    identifier: str, status: int, result: int, scheduled: bool, field: str
) -> None:
    """An identifier, status, result and trigger that name no one state is refused, naming
    the body's field at fault."""
    with pytest.raises(k6cloud.Mismatch) as caught:
        k6cloud.state_of(identifier, status, result, scheduled)
    assert caught.value.field == field
