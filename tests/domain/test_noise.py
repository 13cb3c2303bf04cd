"""Noise control's pure rules: notify_on's judgement, quiet-hours windows, and validation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from loadbell.domain import noise
from loadbell.domain.noise import NotifyOn, finished_notifies


def _sent(rule: NotifyOn, results: str) -> str:
    """Feed a load test's runs in order ("p" passed, "f" failed); the runs that notify."""
    out, history = "", []  # history: newest first
    for r in results:
        out += "x" if finished_notifies(rule, r == "f", history) else "."
        history.insert(0, r == "f")
    return out


@pytest.mark.parametrize(
    ("rule", "runs", "sent"),
    [
        # every_run: each finished run
        (NotifyOn(), "pffp", "xxxx"),
        # result_change: a first run only when it failed; then each change
        (NotifyOn("result_change"), "fpfp", "xxxx"),
        (NotifyOn("result_change"), "ffpp", "x.x."),
        # consecutive_failures 3: the 3rd failure in a row, then the recovery
        (NotifyOn("consecutive_failures", 3), "pffffp", "...x.x"),
        # ...a recovery after a streak shorter than N was never announced, so is not one
        (NotifyOn("consecutive_failures", 3), "ffpfffp", ".....xx"),
        # count 1 is result_change without the first-run rule's difference: every failure
        # that starts a streak, and the recovery
        (NotifyOn("consecutive_failures", 1), "fpff", "xxx."),
    ],
)
def test_notify_on_judges_runs(rule: NotifyOn, runs: str, sent: str) -> None:
    """Which runs of a sequence send their test.finished under each mode."""
    assert _sent(rule, runs) == sent


def test_monitor_recipe_sends_down_and_recovered() -> None:
    """The monitoring recipe: pass, fail, fail, fail, pass gives exactly two notifications."""
    assert _sent(NotifyOn("result_change"), "pfffp") == ".x..x"


BERLIN_NIGHT = {
    "timezone": "Europe/Berlin",
    "from": "22:00",
    "to": "07:00",
    "days": ["mon"],
    "action": "hold",
}


def _window(config: dict[str, Any], at: str) -> str | None:
    rule = noise.quiet_hours_of({"quiet_hours": noise.validate_quiet_hours(config)})
    assert rule is not None
    end = rule.window_end(datetime.fromisoformat(at))
    return None if end is None else end.isoformat()


@pytest.mark.parametrize(
    ("at", "end"),
    [
        # Monday 2026-01-05, 23:30 Berlin (22:30 UTC): inside, ends Tuesday 07:00 Berlin
        ("2026-01-05T22:30:00+00:00", "2026-01-06T06:00:00+00:00"),
        # Tuesday 02:00 Berlin: still Monday's window (a window belongs to its start day)
        ("2026-01-06T01:00:00+00:00", "2026-01-06T06:00:00+00:00"),
        # Tuesday 07:00 Berlin: the end itself is outside
        ("2026-01-06T06:00:00+00:00", None),
        # Tuesday 23:00 Berlin: Tuesday is not a start day
        ("2026-01-06T22:00:00+00:00", None),
        # Sunday 2026-01-04 23:00 Berlin into Monday 02:00: Sunday's window, not listed
        ("2026-01-05T01:00:00+00:00", None),
        # Monday 21:59 Berlin: before the start
        ("2026-01-05T20:59:00+00:00", None),
        # summer time: Monday 2026-07-06 23:00 Berlin is 21:00 UTC; ends 05:00 UTC
        ("2026-07-06T21:00:00+00:00", "2026-07-07T05:00:00+00:00"),
    ],
)
def test_quiet_hours_window_crossing_midnight(at: str, end: str | None) -> None:
    """A window crossing midnight belongs to the day it starts, in the channel's zone."""
    assert _window(BERLIN_NIGHT, at) == end


def test_quiet_hours_window_within_a_day() -> None:
    """A daytime window (from before to) ends the same day."""
    lunch = {**BERLIN_NIGHT, "from": "12:00", "to": "13:00", "timezone": "UTC"}
    assert _window(lunch, "2026-01-05T12:30:00+00:00") == "2026-01-05T13:00:00+00:00"
    assert _window(lunch, "2026-01-05T13:30:00+00:00") is None


@pytest.mark.parametrize(
    ("key", "value", "field", "says"),
    [
        ("notify_on", {"mode": "sometimes"}, "config.notify_on.mode", "result_change"),
        ("notify_on", "result_change", "config.notify_on", "must be an object"),
        ("notify_on", {"mode": "consecutive_failures"}, "config.notify_on.count", "1 to 100"),
        ("notify_on", {"mode": "consecutive_failures", "count": 0}, "config.notify_on.count", ""),
        ("notify_on", {"mode": "result_change", "count": 2}, "config.notify_on.count", "only"),
        ("notify_on", {"mode": "every_run", "n": 1}, "config.notify_on.n", "unknown key"),
        (
            "quiet_hours",
            {**BERLIN_NIGHT, "timezone": "Mars/Olympus"},
            "config.quiet_hours.timezone",
            "IANA",
        ),
        (
            "quiet_hours",
            {**BERLIN_NIGHT, "timezone": ""},
            "config.quiet_hours.timezone",
            "required",
        ),
        ("quiet_hours", {**BERLIN_NIGHT, "from": "24:00"}, "config.quiet_hours.from", "HH:MM"),
        ("quiet_hours", {**BERLIN_NIGHT, "to": "7:00"}, "config.quiet_hours.to", "HH:MM"),
        ("quiet_hours", {**BERLIN_NIGHT, "to": "22:00"}, "config.quiet_hours.to", "differ"),
        ("quiet_hours", {**BERLIN_NIGHT, "days": ["monday"]}, "config.quiet_hours.days[0]", "mon"),
        ("quiet_hours", {**BERLIN_NIGHT, "days": []}, "config.quiet_hours.days", "list"),
        ("quiet_hours", {**BERLIN_NIGHT, "action": "mute"}, "config.quiet_hours.action", "hold"),
        (
            "throttle",
            {"test.report_intermediate": 0},
            "config.throttle.test.report_intermediate",
            "above 0",
        ),
        (
            "throttle",
            {"test.report_intermediate": True},
            "config.throttle.test.report_intermediate",
            "seconds",
        ),
        ("throttle", {"test.exploded": 60}, "config.throttle.test.exploded", "run event"),
        ("throttle", {"project.updated": 60}, "config.throttle.project.updated", "per run"),
        ("throttle", [300], "config.throttle", "object"),
    ],
)
def test_validation_names_the_field(key: str, value: Any, field: str, says: str) -> None:
    """Each refusal names the field and says what to use instead."""
    with pytest.raises(ValueError) as caught:
        noise.VALIDATORS[key](value)
    message = str(caught.value)
    assert message.split(": ", 1)[0] == field
    assert says in message


def test_off_is_stored_false_and_shown_empty() -> None:
    """null turns quiet hours and throttles off, stored as false so that an override can
    say it; the edges show null and {}."""
    assert noise.validate_quiet_hours(None) is False
    assert noise.validate_throttle({}) is False
    shown = noise.shown({"quiet_hours": False, "throttle": False})
    assert shown == {"quiet_hours": None, "throttle": {}}
    assert noise.quiet_hours_of({"quiet_hours": False}) is None
    assert noise.throttle_of({"throttle": False}) == {}


def test_valid_values_are_normalised() -> None:
    """Days come back in week order, the action defaults to hold, counts stay whole."""
    given = {k: v for k, v in BERLIN_NIGHT.items() if k != "action"}
    clean = noise.validate_quiet_hours({**given, "days": ["sun", "mon"]})
    assert clean == {**BERLIN_NIGHT, "days": ["mon", "sun"], "action": "hold"}
    assert noise.validate_notify_on({"mode": "consecutive_failures", "count": 3}) == {
        "mode": "consecutive_failures",
        "count": 3,
    }
    assert noise.validate_throttle({"test.report_intermediate": 300}) == {
        "test.report_intermediate": 300
    }
