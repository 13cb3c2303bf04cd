"""What every request handler needs, built once in ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.delivery.wakeup import Wakeup
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import reader


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    box: SecretBox
    wakeup: Wakeup
    reader: AsyncEngine = field(init=False)  # the same pool, for read-only work

    def __post_init__(self) -> None:
        self.reader = reader(self.engine)


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.loadbell
    return state


async def get_state(request: Request) -> AppState:
    """The dependency form of :func:`state_of`. async: FastAPI runs a plain ``def``
    dependency on a thread pool, a thread hop per request for an attribute lookup."""
    return state_of(request)
