"""A request id for every HTTP request: in the ``X-Request-ID`` response header, in the log
lines about the request, and in the body of a 500, so a user's report leads to the log.

A client's own ``X-Request-ID`` is kept when it is a plain token (letters, digits, ``.``,
``_``, ``-``, at most 64), so a proxy's id follows the request through; otherwise a new one is
made. The request's edge (``api/edge.py``) also answers for errors nothing else handled,
with the app's handler for ``Exception`` (a JSON 500 under /api, a page elsewhere), so that
an error is logged once, with its request id, and the server does not log the traceback a
second time.

With ``access_log`` (``LOADBELL_ACCESS_LOG``) it also logs one line per request on the
``loadbell.access`` logger, with ``method``, ``path``, ``status`` and ``duration_ms`` as
fields (the JSON log format adds the request id to every line logged during a request).
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

HEADER = b"x-request-id"
_ACCEPTED = re.compile(rb"[A-Za-z0-9._-]{1,64}")

access = logging.getLogger("loadbell.access")


def request_ident(given: bytes) -> str:
    """The id of a request whose ``X-Request-ID`` header was ``given`` (``b""``: none)."""
    return given.decode() if _ACCEPTED.fullmatch(given) else new_ident()


def new_ident() -> str:
    """A random version 4 UUID in hex, as ``uuid.uuid4().hex`` spells it, from the same 16
    random bytes but without building a ``UUID`` (about 1 µs instead of 3-4, on every request
    that brings no id of its own: D71)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # the version: 4
    raw[8] = raw[8] & 0x3F | 0x80  # the variant: RFC 4122
    return raw.hex()


async def answer_unhandled(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Answer an error nothing else handled with the app's handler for ``Exception``, which
    logs it once, with the request id."""
    handler = Request(scope).app.exception_handlers[Exception]
    response = await handler(Request(scope, receive), exc)
    await response(scope, receive, send)


def log_access(scope: Scope, status: int, began: float) -> None:
    """The ``loadbell.access`` line of a request answered with ``status``."""
    ms = round((time.perf_counter() - began) * 1000, 1)
    method, path = scope["method"], scope["path"]
    access.info(
        "%s %s %d %.1f ms",
        method,
        path,
        status,
        ms,
        extra={"method": method, "path": path, "status": status, "duration_ms": ms},
    )
