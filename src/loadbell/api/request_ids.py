"""A request id for every HTTP request: in the ``X-Request-ID`` response header, in the log
lines about the request, and in the body of a 500, so a user's report leads to the log.

A client's own ``X-Request-ID`` is kept when it is a plain token (letters, digits, ``.``,
``_``, ``-``, at most 64), so a proxy's id follows the request through; otherwise a new one is
made. This middleware also answers for errors nothing else handled, with the app's handler
for ``Exception`` (a JSON 500 under /api, a page elsewhere), so that an error is logged once,
with its request id, and the server does not log the traceback a second time.

With ``access_log`` (``LOADBELL_ACCESS_LOG``) it also logs one line per request on the
``loadbell.access`` logger, with ``method``, ``path``, ``status`` and ``duration_ms`` as
fields (the JSON log format adds the request id to every line logged during a request).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loadbell.api.request_context import current

HEADER = b"x-request-id"
_ACCEPTED = re.compile(rb"[A-Za-z0-9._-]{1,64}")

access = logging.getLogger("loadbell.access")


class RequestIds:
    def __init__(self, app: ASGIApp, *, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(HEADER, b"")
        ident = given.decode() if _ACCEPTED.fullmatch(given) else uuid.uuid4().hex
        token = current.set(ident)
        started = False
        status = 500  # what the client gets if the app fails before it answers
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, ident.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                raise  # the answer is on its way: only the server can end it
            handler = Request(scope).app.exception_handlers[Exception]
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send_with_id)
        finally:
            if self.access_log:
                self._log(scope, status, began)
            current.reset(token)

    @staticmethod
    def _log(scope: Scope, status: int, began: float) -> None:
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
