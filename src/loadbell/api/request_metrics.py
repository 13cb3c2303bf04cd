"""API requests in the metrics: a count by method, route template and status, and a
latency histogram (``loadbell_http_requests_total``, ``..._duration_seconds``).

The route is the template the router matched (``/api/v1/runs/{run_id}``: Starlette's
``scope["route"]`` with the API prefix it was included under), never the raw path, so the
number of series is bounded by the number of routes whatever clients send.
A request answered before routing (admission's 503, the body limit's 413) or matching no
route (404) is ``route="unrouted"``; a method the API does not use is ``method="other"``.

Counted by the request's edge (``api/edge.py``), outermost of loadbell's own work: its time
covers everything the process does for a request, admission included, until the last byte
of the answer is handed to the server.
``/metrics`` is counted like any route (it shows how often Prometheus scrapes).
"""

from __future__ import annotations

from starlette.types import Scope

UNROUTED = "unrouted"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(scope: Scope, api_prefix: str) -> str:
    """The route template of a request once it has been answered; ``api_prefix``: the one
    prefix every API route was included under (app.py)."""
    # The router writes the route it matched into the scope it was given (this same dict).
    route = getattr(scope.get("route"), "path", None) or UNROUTED
    # The router's route says its path without the prefix it was included under.
    if (
        route is not UNROUTED
        and scope["path"].startswith(api_prefix + "/")
        and not route.startswith(api_prefix + "/")
    ):
        route = api_prefix + route
    return route


def method_label(method: str) -> str:
    return method if method in METHODS else "other"
