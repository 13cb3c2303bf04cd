"""What every request handler needs, built once in ``create_app``."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.delivery.handoff import Handoff
from loadbell.delivery.wakeup import Wakeup
from loadbell.delivery.worker import Worker
from loadbell.monitoring.registry import Metrics
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import reader


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    box: SecretBox
    wakeup: Wakeup
    worker: Worker | None = None  # the delivery worker of this process, if it runs one
    metrics: Metrics | None = None  # this process's Prometheus metrics (api/metrics.py)
    reader: AsyncEngine = field(init=False)  # the same pool, for read-only work
    # Reads that may be slow (the delivery log, lists) never run on the event loop's thread
    # (store/db.py: slow_reader; docs/architecture.md). Given as ``slow``; None: ``reader``.
    slow: InitVar[AsyncEngine | None] = None
    slow_reader: AsyncEngine = field(init=False)
    # token hash -> (valid until, time.monotonic(); Principal): see api/auth.py
    principals: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def __post_init__(self, slow: AsyncEngine | None) -> None:
        self.reader = reader(self.engine)
        self.slow_reader = slow if slow is not None else self.reader

    def forget_principals(self) -> None:
        """A token was revoked or a role changed: read every token afresh."""
        self.principals.clear()

    def handoff(self) -> Handoff | None:
        """For an API call that stages deliveries: the worker of this process takes them
        straight from its transaction (delivery/handoff.py)."""
        return Handoff(self.worker.intake) if self.worker is not None else None

    def staged(self, delivery_ids: list[int], handoff: Handoff | None) -> None:
        """After the commit: release what the handoff took, wake workers for the rest."""
        handed = handoff.release() if handoff is not None else 0
        if len(delivery_ids) > handed:
            self.wakeup.poke()


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.loadbell
    return state


async def get_state(request: Request) -> AppState:
    """The dependency form of :func:`state_of`. async: FastAPI runs a plain ``def``
    dependency on a thread pool, a thread hop per request for an attribute lookup."""
    return state_of(request)
