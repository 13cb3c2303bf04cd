"""The benchmarks' event loop: uvloop when installed, as ``loadbell serve`` runs.

The default loop lags behind a 200/s schedule, and that lag would count as latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result
