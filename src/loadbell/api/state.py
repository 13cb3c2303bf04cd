"""What every request handler needs, built once in ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def reader(self) -> AsyncEngine:
        return reader(self.engine)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.loadbell
    return state
