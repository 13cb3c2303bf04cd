"""The drain: loadbell's own Worker delivering a pre-staged backlog, timed until every
delivery is recorded as succeeded (attempt log and all, not merely sent)."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.backlog import PendingProbe, count_by_status
from loadbell.delivery.sender import Sender
from loadbell.delivery.wakeup import Wakeup
from loadbell.delivery.worker import Worker
from loadbell.runtime import settle_heap
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.queue import queue_for
from loadbell.store.tables import DELIVERY_PENDING

_CHECK_EVERY = 0.01  # seconds between "anything still pending?" reads


@dataclass(frozen=True)
class DrainResult:
    deliveries: int  # finished (succeeded or failed) when the clock stopped
    seconds: float
    statuses: dict[str, int]
    timed_out: bool
    cpu_seconds: float  # this process's CPU time: the worker plus the "pending?" checks
    server_cpu_seconds: float = 0.0  # the database server's, for this database (PostgreSQL)

    @property
    def per_second(self) -> float:
        return self.deliveries / self.seconds if self.seconds > 0 else 0.0


async def drain(
    engine: AsyncEngine,
    settings: Settings,
    box: SecretBox,
    n: int,
    *,
    timeout: float,
    profile: Path | None = None,
    server_cpu: Callable[[Collection[int]], float] = lambda _: 0.0,
    sender: Sender | None = None,
    check_every: float = _CHECK_EVERY,
) -> DrainResult:
    """Run one Worker in this event loop until nothing is pending, or ``timeout`` seconds;
    ``sender`` replaces its HTTP sender (bench/worker_cpu.py); ``check_every`` is the
    seconds between checks for anything pending (bench/worker_instructions.py)."""
    worker = Worker(queue_for(settings), box, settings, Wakeup(), sender=sender, name="bench-drain")
    settle_heap()  # as `loadbell worker` does before it starts
    stop = asyncio.Event()
    # CPU of this thread only: the aiosqlite threads and waiting do not blur the picture.
    profiler = cProfile.Profile(time.thread_time) if profile is not None else None
    started = time.perf_counter()
    cpu = time.process_time()
    server = server_cpu(())
    if profiler is not None:
        profiler.enable()
    task = asyncio.create_task(worker.run(stop), name="bench-worker")
    probe = PendingProbe(engine)
    timed_out = False
    try:
        while True:
            await asyncio.sleep(check_every)
            if task.done():
                task.result()  # raises what stopped the worker
                raise RuntimeError("the worker stopped before the backlog was drained")
            if not await probe.any():
                break
            if time.perf_counter() - started > timeout:
                timed_out = True
                break
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        # Before the worker closes its connections; the probe's backend is the bench's.
        server = server_cpu(probe.server_pids()) - server
    finally:
        probe.close()
        if profiler is not None:
            profiler.disable()
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    statuses = await count_by_status(engine)
    return DrainResult(
        deliveries=n - statuses.get(DELIVERY_PENDING, 0),  # all of them, unless timed out
        seconds=seconds,
        statuses=statuses,
        timed_out=timed_out,
        cpu_seconds=cpu,
        server_cpu_seconds=server,
    )
