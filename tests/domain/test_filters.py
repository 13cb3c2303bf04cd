"""Subscription filters: validation names the bad field; matching ANDs the given lists."""

from __future__ import annotations

from typing import Any

import pytest

from loadbell.domain.events import EventType
from loadbell.domain.filters import RunFacts, matches, validate_filters

STARTED = EventType.TEST_STARTED
FINISHED = EventType.TEST_FINISHED


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        # an event name that does not exist
        ({"test.exploded": {}}, "filters.test.exploded", "unknown event"),
        # an event that takes no filters
        ({"project.created": {"triggers": ["manual"]}}, "filters.project.created", "no filters"),
        # the filter must be an object
        ({"test.started": ["manual"]}, "filters.test.started", "must be an object"),
        # a key the event does not accept
        (
            {"test.started": {"statuses": [3]}},
            "filters.test.started.statuses",
            "accepts k6cloud_events, triggers",
        ),
        # a list is required
        ({"test.started": {"triggers": "manual"}}, "filters.test.started.triggers", "list"),
        # an unknown trigger
        ({"test.started": {"triggers": ["cron"]}}, "filters.test.started.triggers", "manual"),
        # an unknown result
        ({"test.finished": {"results": ["ok"]}}, "filters.test.finished.results", "passed"),
        # a non-terminal status cannot finish a run
        ({"test.finished": {"statuses": [2]}}, "filters.test.finished.statuses", "finishing"),
        # a status given as a string
        ({"test.finished": {"statuses": ["3"]}}, "filters.test.finished.statuses", "3, 4"),
        # a boolean is not a status code
        ({"test.finished": {"statuses": [True]}}, "filters.test.finished.statuses", "finishing"),
    ],
)
def test_validation_names_the_field(raw: dict[str, Any], field: str, hint: str) -> None:
    """Every refusal starts with the dotted path of the bad field and says what to use."""
    with pytest.raises(ValueError) as info:
        validate_filters(raw)
    message = str(info.value)
    assert message.startswith(f"{field}:"), message
    assert hint in message


def test_validation_normalises() -> None:
    """Duplicates are dropped and statuses sorted; the README example is accepted as is."""
    clean = validate_filters(
        {
            "test.started": {"triggers": ["scheduled", "scheduled"]},
            "test.finished": {"statuses": [9, 3, 4, 3], "results": ["failed"]},
        }
    )
    assert clean == {
        "test.started": {"triggers": ["scheduled"]},
        "test.finished": {"statuses": [3, 4, 9], "results": ["failed"]},
    }


README_FILTERS = validate_filters(
    {
        "test.started": {"triggers": ["scheduled"]},
        "test.finished": {"statuses": [3, 4, 5, 6, 7, 8, 9], "results": ["failed"]},
    }
)


@pytest.mark.parametrize(
    ("event", "facts", "expected"),
    [
        # test.started limited to scheduled runs
        (STARTED, RunFacts("scheduled", 2, None), True),
        (STARTED, RunFacts("manual", 2, None), False),
        # test.finished: status listed AND result listed
        (FINISHED, RunFacts("manual", 3, "failed"), True),
        (FINISHED, RunFacts("manual", 3, "passed"), False),  # status ok, result not
        (FINISHED, RunFacts("manual", 8, "failed"), True),
        # an event with no filter always passes
        (EventType.TEST_STARTING, RunFacts("manual", 1, None), True),
        (EventType.LOAD_TEST_CREATED, RunFacts(None, None, None), True),
    ],
)
def test_readme_filters(event: EventType, facts: RunFacts, expected: bool) -> None:
    """The README's channel filters pass and block exactly the documented cases."""
    assert matches(event, README_FILTERS, facts) is expected


@pytest.mark.parametrize(
    ("spec", "facts", "expected"),
    [
        # statuses only: result is "any"
        ({"statuses": [4]}, RunFacts("manual", 4, "failed"), True),
        ({"statuses": [4]}, RunFacts("manual", 3, "failed"), False),
        # results only: status is "any"
        ({"results": ["failed"]}, RunFacts("manual", 9, "failed"), True),
        ({"results": ["failed"]}, RunFacts("manual", 3, "passed"), False),
        # statuses AND results: both must match
        ({"statuses": [3], "results": ["failed"]}, RunFacts("manual", 3, "failed"), True),
        ({"statuses": [3], "results": ["failed"]}, RunFacts("manual", 5, "failed"), False),
        ({"statuses": [3], "results": ["failed"]}, RunFacts("manual", 3, "passed"), False),
        # triggers on a finished event too
        ({"triggers": ["scheduled"]}, RunFacts("manual", 3, "passed"), False),
        # empty object: no constraint
        ({}, RunFacts("manual", 3, "passed"), True),
    ],
)
def test_finished_matching(spec: dict[str, list[Any]], facts: RunFacts, expected: bool) -> None:
    """Given lists are ANDed; an omitted list means any value."""
    filters = validate_filters({"test.finished": spec})
    assert matches(FINISHED, filters, facts) is expected
