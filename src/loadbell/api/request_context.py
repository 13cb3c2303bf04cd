"""The id of the HTTP request being handled, for log lines and error bodies.

Apart from the layer that sets it (``edge``, with ``request_ids``) so that reading it imports
no web framework: the log formatter of every command, ``loadbell run`` included, reads it.
"""

from __future__ import annotations

from contextvars import ContextVar

current: ContextVar[str | None] = ContextVar("loadbell_request_id", default=None)


def request_id() -> str | None:
    return current.get()
