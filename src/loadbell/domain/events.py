"""The event catalog: every event loadbell can emit, and which filters each one takes."""

from __future__ import annotations

from enum import StrEnum

from loadbell.domain.statuses import RunStatus


class EventType(StrEnum):
    TEST_STARTING = "test.starting"  # run entered Initializing (XTC's "Start")
    TEST_STARTED = "test.started"  # run entered Running
    TEST_FINISHED = "test.finished"  # run entered a terminal status
    TEST_REPORT_INTERMEDIATE = "test.report_intermediate"
    TEST_REPORT_AVAILABLE = "test.report_available"
    TEST_THRESHOLD_FAILED = "test.threshold_failed"
    TEST_REGRESSED = "test.regressed"  # a finished run is worse than its baseline's figures
    LOAD_TEST_CREATED = "load_test.created"
    LOAD_TEST_UPDATED = "load_test.updated"
    LOAD_TEST_DELETED = "load_test.deleted"
    PROJECT_CREATED = "project.created"
    PROJECT_UPDATED = "project.updated"
    PROJECT_DELETED = "project.deleted"
    TEST_NOTIFICATION_CHANNEL = "test.notification_channel"  # the test hook
    # A channel of the organization was disabled for failing (domain/health.py); its
    # context carries "channel" (id, name, kind, consecutive_failures, disabled_reason).
    CHANNEL_DISABLED = "channel.disabled"

    @property
    def is_run_event(self) -> bool:
        return self.value.startswith("test.") and self is not EventType.TEST_NOTIFICATION_CHANNEL


# Events that subscriptions may name. The test hook is not subscribable: it always goes to
# the one channel it is sent to.
SUBSCRIBABLE: tuple[EventType, ...] = tuple(
    e for e in EventType if e is not EventType.TEST_NOTIFICATION_CHANNEL
)

# The status a run enters -> the event it produces. Statuses before Initializing produce none.
_EVENT_FOR_STATUS: dict[RunStatus, EventType] = {
    RunStatus.INITIALIZING: EventType.TEST_STARTING,
    RunStatus.RUNNING: EventType.TEST_STARTED,
}


def event_for_status(status: RunStatus) -> EventType | None:
    if status.is_terminal:
        return EventType.TEST_FINISHED
    return _EVENT_FOR_STATUS.get(status)


def parse_event_type(name: str) -> EventType:
    try:
        return EventType(name)
    except ValueError:
        known = ", ".join(e.value for e in SUBSCRIBABLE)
        raise ValueError(f"unknown event '{name}'; known events are: {known}") from None
