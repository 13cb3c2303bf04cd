"""The peers of ``bench/api_path.py``: what a team would use instead of loadbell.

- **Apprise** (a dependency of loadbell already): one ``Apprise`` object with a ``json://``
  URL to the receiver, ``notify()`` called in a loop, one notification after the other,
  as a script or a test hook would call it.
- **Celery with Redis** (``pip install -e '.[bench]'``, a Redis server on 127.0.0.1):
  ``bench/celery_peer.py``'s task POSTs one notification; a ``celery worker`` process
  (prefork, one child per core) takes them from a queue of its own on Redis, and the bench
  enqueues them one after the other.

Each arm is timed like loadbell's: from the first call (``notify()`` or the first enqueue)
to the last arrival at the same receiver. An arm whose package or server is missing is
skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import aiohttp

from bench.proc_cpu import tree_cpu
from bench.receiver import ROOT, ReceiverProcess

REDIS_URL = os.environ.get("LOADBELL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ARRIVAL_TIMEOUT = 120.0  # seconds to wait for the last notification of an arm


@dataclass(frozen=True)
class ArmResult:
    name: str
    count: int  # notifications that arrived
    seconds: float  # first send to last arrival
    cpu_seconds: float  # the notifier's CPU: serve (with children), the loop, worker + producer
    errors: int = 0
    note: str = ""  # for the console, one round
    facts: dict[str, float] = field(default_factory=dict)  # for the summary's ranges

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds / self.count * 1000 if self.count else float("nan")


async def wait_for_arrivals(
    receiver: ReceiverProcess, session: aiohttp.ClientSession, count: int, timeout: float
) -> tuple[int, float]:
    """Poll the receiver until ``count`` requests arrived (or ``timeout``); return how many
    arrived and when the last one did (wall clock)."""
    deadline = time.monotonic() + timeout
    while True:
        tally = await receiver.stats(session)
        if tally.count >= count or time.monotonic() > deadline:
            return tally.count, tally.last
        await asyncio.sleep(0.02)


def body_for(i: int) -> dict[str, object]:
    """A small notification, about the size of what a chat or webhook receiver gets."""
    return {
        "load_test_run_id": i,
        "title": f"Run {i} started",
        "message": f"bench: run {i} of load test 1 is Running",
        "status": 2,
    }


# Apprise


def apprise_missing() -> str | None:
    try:
        import apprise  # noqa: F401
    except ImportError:
        return "apprise is not installed"
    return None


async def apprise_arm(
    receiver: ReceiverProcess, session: aiohttp.ClientSession, count: int, warm: int
) -> ArmResult:
    import apprise

    notifier = apprise.Apprise()
    notifier.add(f"json://127.0.0.1:{receiver.port}/latency")

    def loop(first: int, n: int) -> int:
        failed = 0
        for i in range(first, first + n):
            body = body_for(i)
            if not notifier.notify(body=str(body["message"]), title=str(body["title"])):
                failed += 1
        return failed

    await receiver.reset(session)
    await asyncio.to_thread(loop, 0, warm)  # imports, DNS, first connection
    await wait_for_arrivals(receiver, session, warm, ARRIVAL_TIMEOUT)
    await receiver.reset(session)
    cpu0 = time.process_time()  # every thread of this process: the loop's is the busy one
    t0 = time.time()
    errors = await asyncio.to_thread(loop, warm, count)
    cpu = time.process_time() - cpu0
    arrived, last = await wait_for_arrivals(receiver, session, count, ARRIVAL_TIMEOUT)
    return ArmResult("Apprise notify() loop", arrived, last - t0, cpu, errors)


# Celery with Redis


def celery_missing() -> str | None:
    try:
        import celery  # noqa: F401
        import redis
    except ImportError:
        return "celery[redis] is not installed (pip install -e '.[bench]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_URL} ({exc})"
    return None


class CeleryWorker:
    """``celery -A bench.celery_peer worker`` on a queue of its own, as a child process."""

    def __init__(self, queue: str, concurrency: int) -> None:
        self.queue = queue
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "celery", "-A", "bench.celery_peer", "worker"),
                *("--queues", self.queue, "--concurrency", str(self.concurrency)),
                *("--pool", "prefork", "--loglevel", "WARNING"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "LOADBELL_BENCH_REDIS_URL": REDIS_URL},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


async def celery_arm(
    receiver: ReceiverProcess,
    session: aiohttp.ClientSession,
    count: int,
    warm: int,
    concurrency: int,
) -> ArmResult:
    import redis

    from bench.celery_peer import notify

    queue = f"loadbell-bench-{os.getpid()}"
    url = f"{receiver.url}/latency"
    worker = CeleryWorker(queue, concurrency)
    worker.start()
    assert worker.proc is not None
    try:

        def enqueue(first: int, n: int) -> None:
            for i in range(first, first + n):
                notify.apply_async((url, body_for(i)), queue=queue)

        await receiver.reset(session)
        await asyncio.to_thread(enqueue, 0, warm)  # also waits out the worker's start-up
        arrived, _ = await wait_for_arrivals(receiver, session, warm, ARRIVAL_TIMEOUT)
        if arrived < warm:
            raise RuntimeError("the Celery worker did not deliver its warm-up tasks")
        await receiver.reset(session)
        worker_cpu0 = tree_cpu(worker.proc.pid)
        cpu0 = time.process_time()
        t0 = time.time()
        await asyncio.to_thread(enqueue, warm, count)
        producer_cpu = time.process_time() - cpu0
        arrived, last = await wait_for_arrivals(receiver, session, count, ARRIVAL_TIMEOUT)
        await asyncio.sleep(0.2)  # the last tasks' acknowledgements
        worker_cpu = tree_cpu(worker.proc.pid) - worker_cpu0
    finally:
        worker.stop()
        redis.Redis.from_url(REDIS_URL).delete(queue)
    worker_ms = worker_cpu / max(arrived, 1) * 1000
    producer_ms = producer_cpu / max(arrived, 1) * 1000
    return ArmResult(
        f"Celery + Redis, {concurrency} worker processes",
        arrived,
        last - t0,
        worker_cpu + producer_cpu,
        note=f"worker {worker_ms:.2f} + producer {producer_ms:.2f} ms CPU",
        facts={"worker CPU ms": worker_ms, "producer CPU ms": producer_ms},
    )
