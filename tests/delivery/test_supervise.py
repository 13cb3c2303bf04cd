"""A worker's side tasks are watched: restarted when they fail, fatal when they keep failing."""

from __future__ import annotations

import asyncio

import pytest

from loadbell.delivery import supervise
from loadbell.delivery.supervise import SideTaskFailed, SideTasks


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "RESTART_DELAY", 0.01)


async def test_a_side_task_that_fails_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    """A side task that raises is logged and started again, and goes on working."""
    runs = 0
    working = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"bug {runs}")
        working.set()
        await asyncio.Event().wait()

    tasks = SideTasks()
    tasks.start("result writer", flaky)
    await asyncio.wait_for(working.wait(), timeout=10)
    assert runs == 3
    assert not tasks.gave_up().done()
    assert caplog.text.count("result writer failed; restarting it") == 2
    await tasks.stop()


async def test_a_side_task_that_keeps_failing_gives_up() -> None:
    """One that fails MAX_RESTARTS times within WINDOW seconds stops: the worker is told
    and exits rather than go on without it."""

    async def broken() -> None:
        raise RuntimeError("the disk is gone")

    tasks = SideTasks()
    tasks.start("heartbeat", broken)
    failure = await asyncio.wait_for(tasks.gave_up(), timeout=10)
    assert isinstance(failure, SideTaskFailed)
    assert "heartbeat kept failing: the disk is gone" in str(failure)
    await tasks.stop()
