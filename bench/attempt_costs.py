"""What four pieces of the worker's per-attempt bookkeeping cost, beside what they replaced.

    python -m bench.attempt_costs [--rounds 7] [--number 50000]

Each pair is timed in turns in this one process (``timeit``, ``--number`` calls a round),
so the machine's spells weigh on both sides alike; the figure is each side's median round
in µs per call, and their ratio (docs/decisions.md, D79 and D80):

- the three values an attempt builds (``Outcome``, ``Message``, ``OutboundRequest``), as
  loadbell's slotted dataclasses and as frozen dataclasses with the same fields;
- counting an attempt in its three metrics: ``Metrics.attempt`` (``monitoring/attempts.py``)
  and prometheus-client's ``Counter.inc`` and ``Histogram.observe`` on label children bound
  once, as the registry did;
- masking the channel's secrets in the logged body sent: a whole body
  (``mask_secrets(..., cut=False)``) and one that may have been cut at its limit;
- an attempt's deadline, entered and left in a task (``delivery/deadlines.py``): given the
  sender's loop, with ``with``, and as it was, an ``async with`` that asked for the running
  task and loop (:class:`AskingDeadline`). Both sides run in a coroutine of their own, driven
  by hand, so that each pays the same for it.
"""

from __future__ import annotations

import asyncio
import statistics
import timeit
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import click
from prometheus_client import CollectorRegistry, Counter, Histogram

from bench.loop import run as run_in_loop
from loadbell.delivery.deadlines import Deadline, Deadlines
from loadbell.domain.events import EventType
from loadbell.monitoring.registry import ATTEMPT_BUCKETS, OUTCOMES, Metrics
from loadbell.security.masking import mask_secrets
from loadbell.values import Message, OutboundRequest, Outcome, Verdict

# A webhook channel's secret strings (its URL's path, a signing secret), and a logged
# LoadImpact body of about 500 bytes that holds neither.
SECRETS = frozenset({"/drain", "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"})
BODY = (
    '{"status": 1, "status_text": "Created", "user_id": 1, "name": "bench", '
    '"organization_id": 1, "load_test_id": 1, "load_test_run_id": 1, "project_id": 1, '
    '"event": "test.started"}'
) * 3


def frozen_twin(cls: type) -> type:
    """A frozen dataclass with ``cls``'s fields and defaults: what the value types were."""
    spec = [
        (
            f.name,
            f.type,
            field(default=f.default, default_factory=f.default_factory),
        )
        for f in fields(cls)
    ]
    namespace: dict[str, Any] = {"__annotations__": {name: kind for name, kind, _ in spec}}
    namespace.update({name: default for name, _, default in spec})
    return dataclass(frozen=True)(type(f"Frozen{cls.__name__}", (), namespace))


def build_values(outcome: type, message: type, request: type) -> Callable[[], object]:
    """What an attempt builds: its message, its request and its outcome."""
    now = datetime.now(UTC)

    def build() -> object:
        return (
            message(
                delivery_id="2f1e0c9a-6d8b-4c1a-9e57-0d3b7c2a1f44",
                event_id=1,
                event_type=EventType.TEST_STARTED,
                occurred_at=now,
                context={},
                public_url="http://127.0.0.1:8000",
                target=None,
            ),
            request(url="http://127.0.0.1:9100/drain", body=b"{}", headers={"A": "b"}),
            outcome(
                Verdict.DELIVERED,
                status_code=204,
                body_excerpt="",
                duration_ms=1.5,
                request_url="http://127.0.0.1:9100/****",
                request_headers={"A": "b"},
                request_body="{}",
                request_body_bytes=2,
                response_headers={"Server": "bench-receiver"},
            ),
        )

    return build


def client_metrics() -> Callable[[], None]:
    """The three metrics in prometheus-client's own classes, children bound once."""
    registry = CollectorRegistry()
    p = ("process",)
    deliveries = Counter("d", "d", [*p, "kind", "outcome"], registry=registry)
    retries = Counter("r", "r", [*p, "kind"], registry=registry).labels("bench", "webhook")
    duration = Histogram("h", "h", [*p, "kind"], buckets=ATTEMPT_BUCKETS, registry=registry)
    outcomes = {s: deliveries.labels("bench", "webhook", o) for s, o in OUTCOMES.items()}
    seconds = duration.labels("bench", "webhook")

    def attempt(number: int = 1, status: str = "succeeded") -> None:
        outcomes[status].inc()
        if number > 1:
            retries.inc()
        seconds.observe(0.003)

    return attempt


class AskingDeadline(Deadline):
    """The deadline as it was before D80: an async context manager that asked for the
    running task and loop (each ask a ``getpid`` system call on Python 3.11)."""

    async def __aenter__(self) -> AskingDeadline:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        loop = asyncio.get_running_loop()
        self._deadlines._add(self, loop.time() + self._seconds, loop)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)


def _driven(block: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """``block()`` run to its end by hand: it awaits nothing that suspends."""

    def run() -> None:
        try:
            block().send(None)
        except StopIteration:
            pass

    return run


def deadlines(loop: asyncio.AbstractEventLoop) -> tuple[Callable[[], None], Callable[[], None]]:
    """An attempt's deadline entered and left, now and as it was; call in a task of ``loop``."""
    now, before = Deadlines(), Deadlines()

    async def given_the_loop() -> None:
        with now.within(30, loop):
            pass

    async def asking() -> None:
        async with AskingDeadline(before, 30, loop):
            pass

    return _driven(given_the_loop), _driven(asking)


def pairs(
    loop: asyncio.AbstractEventLoop,
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Each piece as loadbell does it now, and as it was; call in a task of ``loop``."""
    metrics = Metrics("bench")
    twins = (frozen_twin(Outcome), frozen_twin(Message), frozen_twin(OutboundRequest))
    return {
        "Outcome, Message, OutboundRequest": (
            build_values(Outcome, Message, OutboundRequest),
            build_values(*twins),
        ),
        "the attempt's three metrics": (
            lambda: metrics.attempt("webhook", 1, "succeeded", 0.003),
            client_metrics(),
        ),
        "masking the body sent": (
            lambda: mask_secrets(BODY, SECRETS, cut=False),
            lambda: mask_secrets(BODY, SECRETS),
        ),
        "the attempt's deadline": deadlines(loop),
    }


async def _time(rounds: int, number: int) -> dict[str, tuple[list[float], list[float]]]:
    """Each pair's rounds, in µs per call, timed in this task (the deadlines need one)."""
    timed = pairs(asyncio.get_running_loop())
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in timed}
    for _ in range(rounds):
        for name, (now, before) in timed.items():
            for side, call in enumerate((now, before)):
                times[name][side].append(timeit.timeit(call, number=number) / number * 1e6)
    return times


@click.command()
@click.option("--rounds", default=7, show_default=True, help="Rounds, each side in turn.")
@click.option("--number", default=50_000, show_default=True, help="Calls per round.")
def main(rounds: int, number: int) -> None:
    """Time each piece now and as it was, in turns; print the medians and their ratio."""
    times = run_in_loop(_time(rounds, number))  # uvloop, as `loadbell worker` runs
    click.echo(f"{'per attempt':36s}  {'now':>8s}  {'before':>8s}  ratio")
    for name, (now_times, before_times) in times.items():
        now_us, before_us = statistics.median(now_times), statistics.median(before_times)
        click.echo(f"{name:36s}  {now_us:6.2f} µs  {before_us:6.2f} µs  {now_us / before_us:.2f}×")


if __name__ == "__main__":
    main()
