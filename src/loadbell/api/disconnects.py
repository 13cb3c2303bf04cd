"""No work for a client that has gone.

Under overload a request can wait (for the event loop, a pooled connection, SQLite's write
lock) long enough for its client to give up. Serving it anyway spends the capacity that
the clients still waiting need, and a write would still commit: before the in-flight cap,
5,137 runs were left at Created by clients that had timed out (docs/benchmarks.md,
"Overload"). So every API route depends on :func:`client_present`, which runs after the body
was read and before the handler (and so before its transaction): a request whose client
closed its connection is dropped there. Nothing is answered (no one would read it) and
nothing is stored. The API's routers depend on it; the web pages do not (a page reads its
form itself, and people do not abandon them by the thousand).

A client that goes away later, while its transaction runs, still gets its change made:
the check is one look, not a watch.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import Response
from starlette.types import Message, Receive

from loadbell.api.request_context import request_id

log = logging.getLogger(__name__)

# The status logged and "answered" for a dropped request (nginx's "client closed request").
# The server sends nothing on a closed connection.
CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The client closed its connection before the handler ran."""


async def client_present(request: Request) -> None:
    """Raise :class:`ClientGone` when the client has closed its connection.

    The body is read (and kept for the handler) first: once it is, the only message the
    server can have for the request is ``http.disconnect``, and the look cannot swallow
    part of the body.
    """
    await request.body()
    if closed(request.receive):
        raise ClientGone


def closed(receive: Receive) -> bool:
    """Whether ``receive`` has an ``http.disconnect`` ready, without waiting for one.

    Runs one step of ``receive()``: a message that is ready comes back within that step;
    a ``receive`` that would wait is closed where it waits, as a cancellation would end it.
    This is what Starlette's ``Request.is_disconnected`` does with an anyio cancel scope
    that is cancelled before it starts, which cost about 90 µs per API call (3.6 % of
    ``serve``'s CPU on the API path, docs/benchmarks.md); this costs a few µs.
    """
    step = receive().__await__()  # the awaitable's own iterator, as ``await`` drives it
    try:
        step.send(None)
    except StopIteration as done:
        message: Message = done.value
        return message.get("type") == "http.disconnect"
    step.close()
    return False


async def dropped(request: Request, _exc: Exception) -> Response:
    log.info(
        "request %s: %s %s: the client closed the connection before it was handled; dropped",
        request_id() or "-",
        request.method,
        request.url.path,
    )
    return Response(status_code=CLIENT_CLOSED)
