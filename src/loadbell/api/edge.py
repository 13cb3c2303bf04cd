"""loadbell's own work around every HTTP request, in one ASGI layer.

In order, outermost first (each concern is described in its own module):

1. **Metrics** (``request_metrics.py``): the request counted by method, route template and
   status, and timed from here until its answer is out.
2. **The request id** (``request_ids.py``): ``X-Request-ID`` on every answer, the id in the
   log lines about the request, and a JSON 500 for an error nothing else handled.
3. **Admission** (``admission.py``): a 503 at once for a request the process cannot serve
   promptly; the rest are counted in flight until answered.
4. **The body limit** (``limits.py``): a 413 for a body past ``LOADBELL_MAX_BODY_BYTES``.
5. **The JSON guard** (``json_body.py``): a 422 for a JSON body loadbell cannot store.
6. **Direct routes** (``direct.py``): the run update answered here, past the framework's
   layers between this one and the route; every other request goes to the app.

These were five middlewares, each a coroutine around the next, two of them wrapping
``send``, each reading the headers again. As one layer the request's headers are read once
and every message of the answer passes one wrapper, on the path a load test's client calls
at a high rate (docs/benchmarks.md, "The API path"). The answers are the same: the 503,
413 and 422 still carry the request id and are counted in the metrics.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loadbell.api import json_body
from loadbell.api.admission import Admission, exempt
from loadbell.api.asgi_answer import Answer, send_answer
from loadbell.api.direct import Direct
from loadbell.api.limits import TOO_LARGE, read_capped, too_large
from loadbell.api.request_context import current
from loadbell.api.request_ids import HEADER, answer_unhandled, log_access, request_ident
from loadbell.api.request_metrics import method_label, route_label
from loadbell.monitoring.registry import Metrics


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        api_prefix: str,
        admission: Admission,
        max_body_bytes: int,
        access_log: bool = False,
        direct: Direct | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.api_prefix = api_prefix
        self.admission = admission
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.direct = direct
        self._too_large = too_large(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        # The headers this layer needs, in one pass: the last X-Request-ID and the last
        # numeric Content-Length count, and the first Content-Type.
        given, length, content_type = b"", None, None
        for name, value in scope.get("headers", ()):
            if name == HEADER:
                given = value
            elif name == b"content-length":
                if value.isdigit():
                    length = int(value)
            elif name == b"content-type" and content_type is None:
                content_type = value
        ident = request_ident(given)
        id_header = (HEADER, ident.encode())
        token = current.set(ident)
        started = False
        status = 500  # what the client gets if the app fails before it answers

        async def answer(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        json = (
            content_type is not None
            and b"json" in content_type.lower()
            and scope["method"] in json_body.METHODS
        )
        try:
            await self._admit(scope, receive, answer, length, json)
        except Exception as exc:
            if started:
                raise  # the answer is on its way: only the server can end it
            await answer_unhandled(scope, receive, answer, exc)
        finally:
            if self.access_log:
                log_access(scope, status, began)
            current.reset(token)
            self.metrics.request(
                method_label(scope["method"]),
                route_label(scope, self.api_prefix),
                status,
                time.perf_counter() - began,
            )

    async def _admit(
        self, scope: Scope, receive: Receive, send: Send, length: int | None, json: bool
    ) -> None:
        if exempt(scope["path"]):
            await self._checked(scope, receive, send, length, json)
            return
        admission = self.admission
        refused = admission.refusal(scope)
        if refused is not None:
            await send_answer(send, refused)
            return
        admission.in_flight += 1
        try:
            await self._checked(scope, receive, send, length, json)
        finally:
            admission.in_flight -= 1

    async def _checked(
        self, scope: Scope, receive: Receive, send: Send, length: int | None, json: bool
    ) -> None:
        """The body limit, then the JSON guard, then a direct route or the app."""
        if length is not None:
            if length > self.max_body_bytes:
                await send_answer(send, self._too_large)
                return
            if not json:
                await self.app(scope, receive, send)
                return
        body = await read_capped(receive, self.max_body_bytes)
        if not isinstance(body, bytes):
            if body is TOO_LARGE:
                await send_answer(send, self._too_large)
            return  # or the client went away
        if json:
            refused = _guard(body)
            if refused is not None:
                await send_answer(send, refused)
                return
            if self.direct is not None and await self.direct.serve(
                scope, _replay(body, receive), send
            ):
                return
        await self.app(scope, _replay(body, receive), send)


def _guard(body: bytes) -> Answer | None:
    try:
        json_body.check(body)
    except json_body.Refused as exc:
        return json_body.refusal(exc)
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app, once the body was read here: the body whole, then whatever
    the server has next (a disconnect)."""
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
