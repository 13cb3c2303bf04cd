"""The outage log: one line when the database goes away and one when it is back, and a
statement already under way when the outage was seen does not end it."""

from __future__ import annotations

import logging
import time

import pytest

from loadbell.delivery.outage import Outage
from loadbell.store.queue import QueueConflict

UNREACHABLE = "database unreachable"
REACHABLE = "database reachable again"


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_one_line_at_the_start_and_one_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="loadbell.worker")
    failures: list[None] = []
    outage = Outage("w1", lambda: failures.append(None))
    outage.ok(time.monotonic())  # no outage: nothing to say
    for _ in range(3):
        outage.failed(ConnectionRefusedError("[Errno 111] Connection refused\nmore"))
    assert outage.down
    outage.ok(time.monotonic())
    assert not outage.down
    assert len(failures) == 3  # the metrics count every failed statement
    assert _lines(caplog, UNREACHABLE) == [
        "worker w1: database unreachable ([Errno 111] Connection refused); "
        "retrying until it is back"
    ]
    assert len(_lines(caplog, REACHABLE)) == 1


def test_a_statement_begun_before_the_outage_does_not_end_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL ends its connections one by one as it shuts down: a result write already
    under way may succeed just after a claim failed. That is not the database coming back."""
    caplog.set_level(logging.WARNING, logger="loadbell.worker")
    outage = Outage("w1")
    began_before = time.monotonic()
    outage.failed(ConnectionError("terminating connection due to administrator command"))
    outage.ok(began_before)
    assert outage.down
    assert _lines(caplog, REACHABLE) == []
    outage.failed(ConnectionRefusedError("Connection refused"))
    assert len(_lines(caplog, UNREACHABLE)) == 1  # still the same outage

    outage.ok(time.monotonic())
    assert not outage.down
    assert len(_lines(caplog, REACHABLE)) == 1


def test_a_conflict_is_retried_without_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """A statement the database rolled back to break a deadlock is counted and logged as
    what it is, and starts no outage: the database is there."""
    caplog.set_level(logging.WARNING, logger="loadbell.worker")
    failures: list[None] = []
    outage = Outage("w1", lambda: failures.append(None))
    outage.failed(QueueConflict("DeadlockDetectedError: deadlock detected\nDETAIL: ..."))
    assert not outage.down
    assert len(failures) == 1
    assert _lines(caplog, UNREACHABLE) == []
    assert _lines(caplog, "rolled a statement back") == [
        "worker w1: the database rolled a statement back (DeadlockDetectedError: deadlock "
        "detected); trying it again"
    ]
    outage.ok(time.monotonic())
    assert _lines(caplog, REACHABLE) == []
