"""Durations written on the command line (``loadbell prune --older-than``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loadbell.domain.durations import DurationError, parse_duration

HINT = "--older-than: write a number and a unit: 45s, 90m, 12h or 30d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),  # seconds
        ("90m", timedelta(minutes=90)),  # minutes, more than an hour's worth
        ("12h", timedelta(hours=12)),  # hours
        ("30d", timedelta(days=30)),  # days
        ("0d", timedelta(0)),  # zero: everything that is not pending is older
        (" 7D ", timedelta(days=7)),  # surrounding spaces and an upper-case unit
    ],
)
def test_parses_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    """A whole number followed by s, m, h or d is that many seconds, minutes, hours or days."""
    assert parse_duration(text, option="--older-than") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",  # nothing
        "30",  # no unit
        "d",  # no number
        "1.5h",  # not a whole number
        "-1d",  # negative
        "1h30m",  # two units
        "2w",  # an unknown unit
        "30 d",  # a space inside
    ],
)
def test_refuses_anything_else_naming_the_option(text: str) -> None:
    """Anything but one whole number and one unit is refused with the option and the forms."""
    with pytest.raises(DurationError) as caught:
        parse_duration(text, option="--older-than")
    assert str(caught.value) == HINT


def test_refuses_a_duration_too_long_to_represent() -> None:
    """A number of days past what a timedelta holds is refused, not an overflow traceback."""
    with pytest.raises(DurationError, match="--older-than: at most"):
        parse_duration("99999999999d", option="--older-than")
