"""Noise control: the channel ``config`` keys that decide whether a delivery goes out now,
waits, or is recorded unsent (pure: no I/O). Valid for every kind; a project overrides them
with value-level inheritance like any other config value.

- ``notify_on``: ``{"mode": "every_run"}`` (default), ``{"mode": "result_change"}``, or
  ``{"mode": "consecutive_failures", "count": N}``. Judges a run's ``test.finished`` against
  the load test's previous finished runs (:func:`finished_notifies`). Under the two
  judging modes the run's other events follow that judgement (docs/decisions.md, D49):
  ``test.regressed`` goes out only with a
  ``test.finished`` that went out, and the run's progress events (starting, started,
  reports, thresholds) are suppressed, so a monitor hears "down" and "recovered" only.
- ``quiet_hours``: ``{"timezone", "from", "to", "days", "action"}``: a window of local
  time that starts on each of ``days`` (a window crossing midnight belongs to the day it
  starts) during which deliveries are held until its end (``hold``) or suppressed
  (``drop``).
- ``throttle``: ``{"test.report_intermediate": 300}``: at most one delivery of that event
  per that many seconds, per run and channel.

Inheritance cannot tell ``null`` from "not set" (empty values are dropped), so "off" is
stored as ``false`` and shown as ``null`` (``quiet_hours``) or ``{}`` (``throttle``), as
``auto_disable`` does (``domain/health.py``); a project override turns one off with
``false``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loadbell.domain.events import SUBSCRIBABLE, EventType

NOTIFY_ON = "notify_on"
QUIET_HOURS = "quiet_hours"
THROTTLE = "throttle"
KEYS = (NOTIFY_ON, QUIET_HOURS, THROTTLE)
OFF = False  # how "null" is stored (see the module docstring)

EVERY_RUN = "every_run"
RESULT_CHANGE = "result_change"
CONSECUTIVE_FAILURES = "consecutive_failures"
MODES = (EVERY_RUN, RESULT_CHANGE, CONSECUTIVE_FAILURES)
MAX_COUNT = 100  # consecutive failures: at most this many previous runs are read

DEFAULTS: dict[str, Any] = {NOTIFY_ON: {"mode": EVERY_RUN}, QUIET_HOURS: OFF, THROTTLE: OFF}

HOLD = "hold"
DROP = "drop"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_THROTTLE = 7 * 86400  # seconds

# The ``reason`` of a delivery noise control kept from going out (suppressed or held).
REASON_NOTIFY_ON = "notify_on"
REASON_QUIET_HOURS = "quiet_hours"
REASON_THROTTLE = "throttle"

# A run's events judged with its test.finished under result_change and consecutive_failures.
PROGRESS = frozenset(
    {
        EventType.TEST_STARTING,
        EventType.TEST_STARTED,
        EventType.TEST_REPORT_INTERMEDIATE,
        EventType.TEST_REPORT_AVAILABLE,
        EventType.TEST_THRESHOLD_FAILED,
    }
)
JUDGED = frozenset({EventType.TEST_FINISHED, EventType.TEST_REGRESSED})

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


# -- notify_on -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyOn:
    mode: str = EVERY_RUN
    count: int = 1  # consecutive_failures only

    @property
    def judges(self) -> bool:
        """Whether anything but every run is sent (the previous runs must be read)."""
        return self.mode != EVERY_RUN

    @property
    def history(self) -> int:
        """How many previous finished runs the judgement needs."""
        return self.count if self.mode == CONSECUTIVE_FAILURES else 1


def notify_on_of(config: Mapping[str, Any]) -> NotifyOn:
    value = config.get(NOTIFY_ON)
    if not isinstance(value, Mapping):
        return NotifyOn()
    return NotifyOn(str(value.get("mode", EVERY_RUN)), int(value.get("count", 1)))


def finished_notifies(rule: NotifyOn, failed: bool, previous: Sequence[bool]) -> bool:
    """Whether a run's ``test.finished`` is sent. ``failed``: the run's result is not
    ``passed``; ``previous``: the load test's previous finished runs, newest first, True for
    each that failed (at least ``rule.history`` of them when there are that many).

    Worked example, consecutive_failures with count 3, runs pass, fail, fail, fail, fail,
    pass: only the 4th run (the 3rd failure in a row) and the 6th (the recovery) notify.
    """
    if rule.mode == EVERY_RUN:
        return True
    if rule.mode == RESULT_CHANGE:
        if not previous:
            return failed  # a first run notifies only when it failed
        return failed != previous[0]
    streak = 0  # failures in a row just before this run
    for was_failed in previous:
        if not was_failed:
            break
        streak += 1
    if failed:
        return streak + 1 == rule.count
    return streak >= rule.count  # a recovery from a streak that was announced


def validate_notify_on(raw: Any) -> dict[str, Any]:
    field = f"config.{NOTIFY_ON}"
    if raw is None:
        return dict(DEFAULTS[NOTIFY_ON])
    if not isinstance(raw, Mapping):
        raise ValueError(
            f'{field}: must be an object like {{"mode": "result_change"}}; modes: '
            + ", ".join(MODES)
        )
    unknown = sorted(set(raw) - {"mode", "count"})
    if unknown:
        raise ValueError(f"{field}.{unknown[0]}: unknown key; use mode (and count)")
    mode = raw.get("mode")
    if mode not in MODES:
        raise ValueError(f"{field}.mode: must be one of {', '.join(MODES)}")
    if mode != CONSECUTIVE_FAILURES:
        if "count" in raw:
            raise ValueError(f"{field}.count: only the consecutive_failures mode takes a count")
        return {"mode": mode}
    count = raw.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(
            f"{field}.count: must be a whole number from 1 to {MAX_COUNT} (the failures in "
            "a row that send the first notification)"
        )
    return {"mode": mode, "count": count}


# -- quiet_hours -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    zone: ZoneInfo
    start: time
    end: time
    days: frozenset[int]  # date.weekday() of the days a window starts
    action: str

    def window_end(self, now: datetime) -> datetime | None:
        """The end of the window ``now`` falls in (aware, UTC), or None outside them."""
        local = now.astimezone(self.zone)
        for back in (0, 1):  # a window that started today, or yesterday and crosses midnight
            day = local.date() - timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            begins = _at(day, self.start, self.zone)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            ends = _at(end_day, self.end, self.zone)
            if begins <= now < ends:
                return ends.astimezone(UTC)
        return None


def _at(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone)


def quiet_hours_of(config: Mapping[str, Any]) -> QuietHours | None:
    value = config.get(QUIET_HOURS)
    if not isinstance(value, Mapping):
        return None
    return QuietHours(
        zone=ZoneInfo(value["timezone"]),
        start=time.fromisoformat(value["from"]),
        end=time.fromisoformat(value["to"]),
        days=frozenset(DAYS.index(d) for d in value["days"]),
        action=value["action"],
    )


def validate_quiet_hours(raw: Any) -> dict[str, Any] | bool:
    if raw is None or raw is False:
        return OFF
    field = f"config.{QUIET_HOURS}"
    if not isinstance(raw, Mapping):
        raise ValueError(
            f'{field}: must be an object like {{"timezone": "Europe/Berlin", "from": "22:00", '
            '"to": "07:00", "days": ["mon", "tue"], "action": "hold"}, or null for none'
        )
    known = ("timezone", "from", "to", "days", "action")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{field}.{unknown[0]}: unknown key; use {', '.join(known)}")
    zone = raw.get("timezone")
    if not isinstance(zone, str) or not zone:
        raise ValueError(f"{field}.timezone: required, an IANA time zone such as Europe/Berlin")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{field}.timezone: unknown time zone '{zone}'; use an IANA name such as "
            "Europe/Berlin or UTC"
        ) from None
    for key in ("from", "to"):
        value = raw.get(key)
        if not isinstance(value, str) or not _HHMM.match(value):
            raise ValueError(f'{field}.{key}: required, a local time "HH:MM" from 00:00 to 23:59')
    if raw["from"] == raw["to"]:
        raise ValueError(f"{field}.to: must differ from 'from' (a window of no length)")
    days = raw.get("days", list(DAYS))
    if not isinstance(days, list) or not days:
        raise ValueError(f'{field}.days: a list of days the window starts on, e.g. ["mon"]')
    for i, day in enumerate(days):
        if day not in DAYS:
            raise ValueError(f"{field}.days[{i}]: unknown day '{day}'; use {', '.join(DAYS)}")
    action = raw.get("action", HOLD)
    if action not in (HOLD, DROP):
        raise ValueError(
            f"{field}.action: must be 'hold' (send when the window ends) or 'drop' "
            "(record it suppressed)"
        )
    ordered = [d for d in DAYS if d in days]
    return {
        "timezone": zone,
        "from": raw["from"],
        "to": raw["to"],
        "days": ordered,
        "action": action,
    }


# -- throttle --------------------------------------------------------------------------------


def throttle_of(config: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per event type; empty: no throttle."""
    value = config.get(THROTTLE)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items()}


def validate_throttle(raw: Any) -> dict[str, Any] | bool:
    if raw is None or raw is False or raw == {}:
        return OFF
    field = f"config.{THROTTLE}"
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"{field}: must be an object of event type to seconds, like "
            '{"test.report_intermediate": 300}, or null for none'
        )
    run_events = [e.value for e in SUBSCRIBABLE if e.is_run_event]
    out: dict[str, Any] = {}
    for name, seconds in raw.items():
        if name not in run_events:
            raise ValueError(
                f"{field}.{name}: not a run event; a throttle counts per run, so use one of "
                + ", ".join(run_events)
            )
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds <= MAX_THROTTLE
        ):
            raise ValueError(
                f"{field}.{name}: must be a number of seconds above 0, at most {MAX_THROTTLE}"
            )
        out[name] = seconds
    return out


# -- the keys together -----------------------------------------------------------------------

VALIDATORS = {
    NOTIFY_ON: validate_notify_on,
    QUIET_HOURS: validate_quiet_hours,
    THROTTLE: validate_throttle,
}


def shown(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as the edges show it: "off" as ``null`` (quiet hours) or ``{}`` (throttle)."""
    out = dict(config)
    if out.get(QUIET_HOURS, True) is OFF:
        out[QUIET_HOURS] = None
    if out.get(THROTTLE, True) is OFF:
        out[THROTTLE] = {}
    return out
