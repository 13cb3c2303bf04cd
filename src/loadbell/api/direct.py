"""Requests answered straight from loadbell's edge, past the framework's layers.

Between ``api/edge.py`` and a route's handler a request passes Starlette's exception
layer, FastAPI's exit-stack layer, the router (a regular expression per route, and with
FastAPI's included routers a match per inclusion) and the route's own wrapper. For most
requests that is cheap next to what they do. For the run update, which a load test's
client sends a thousand times a second, it was about a tenth of ``serve``'s CPU per
request (docs/benchmarks.md, "The API path"; docs/decisions.md, D82).

A :class:`DirectRoute` names one route by method and path, with an ``answer`` that serves
the usual request of it and returns None for anything else. The edge asks :class:`Direct`
once it has read the body: a request that no direct route takes, or whose route's answer
is None, goes through the framework as before, so what a client gets does not depend on
which way its request went. An error the answer raises is answered by the app's own
exception handlers, found as Starlette's exception layer finds them (by status for an
``HTTPException``, then by the exception's classes); one with no handler there goes on to
the edge, which answers it with a 500 as it answers any other.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

Answer = Callable[[Request], Awaitable[Response | None]]
Handler = Callable[[Request, Exception], Any]


@dataclass(frozen=True)
class DirectRoute:
    """``method`` and ``path``, a pattern whose named groups are the path parameters, as
    the router would give them, for ``route``, the route it stands for (the metrics read
    its template from the scope, as after the router)."""

    method: str
    path: re.Pattern[str]
    route: BaseRoute
    answer: Answer


class Direct:
    def __init__(self, routes: list[DirectRoute]) -> None:
        self._routes = routes

    def find(self, scope: Scope) -> tuple[DirectRoute, dict[str, str]] | None:
        """The direct route for this request and its path parameters, if one takes it."""
        if scope.get("root_path"):
            return None  # the router's path is the path without it: leave it to the router
        for route in self._routes:
            if scope["method"] == route.method:
                matched = route.path.fullmatch(scope["path"])
                if matched is not None:
                    return route, matched.groupdict()
        return None

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request with its direct route; False (nothing sent) when no route
        takes it or its route leaves it to the framework."""
        found = self.find(scope)
        if found is None:
            return False
        route, params = found
        scope["path_params"] = params
        scope["route"] = route.route
        request = Request(scope, receive)
        try:
            response = await route.answer(request)
        except Exception as exc:
            handler = handler_for(request.app.exception_handlers, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        if response is None:
            # The router sets both again for the route it matches, and none for no route.
            del scope["path_params"], scope["route"]
            return False
        await response(scope, receive, send)
        return True


def handler_for(handlers: dict[Any, Handler], exc: Exception) -> Handler | None:
    """The app's handler for ``exc`` as Starlette's exception layer picks it: the one for an
    ``HTTPException``'s status, else the one for the nearest of the exception's classes.
    The handler for ``Exception`` (and 500) is left out, as Starlette leaves it to its
    outermost layer: an error without a handler of its own is the edge's."""
    if isinstance(exc, HTTPException) and exc.status_code != 500:
        by_status = handlers.get(exc.status_code)
        if by_status is not None:
            return by_status
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
