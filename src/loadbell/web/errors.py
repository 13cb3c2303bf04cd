"""Error pages in HTML for every address outside ``/api/``.

The API answers its errors in JSON (``api/errors.py``). A person who types a wrong address,
follows a stale link or meets a server failure gets the HTML error page instead: the
handlers installed here wrap the API's, keep JSON for ``/api/*`` and render ``error.html``
for everything else. Errors raised inside a page handler (``ApiError``, ``PageError``) never
get this far: :class:`~loadbell.web.pages.PageRoute` turns them into the same page.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from loadbell.api.errors import RETRY_AFTER, http_status, log_failure
from loadbell.services.errors import ServiceError
from loadbell.store.db import DATABASE_ERRORS, unavailable
from loadbell.web.pages import error_page

log = logging.getLogger(__name__)

API_PREFIX = "/api/"  # everything under it keeps the API's JSON errors

PageFor = Callable[[Request, Any], Awaitable[Response]]
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def _problem(err: Any) -> str:
    """One validation error of an address, in words: ``run_id must be a whole number``."""
    name = str(err["loc"][-1]) if err.get("loc") else "a value"
    kind = err.get("type", "")
    if kind == "missing":
        return f"{name} is missing"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{name} must be a whole number, not '{err.get('input')}'"
    return f"{name}: {str(err.get('msg', 'is invalid')).removeprefix('Value error, ')}"


async def validation_page(request: Request, exc: RequestValidationError) -> Response:
    """A wrong part of the path is a page that does not exist (404); a wrong or missing
    query parameter is a request to check (422)."""
    errors = list(exc.errors())
    words = "; ".join(_problem(e) for e in errors) or "a value is invalid"
    if any(e.get("loc", ("",))[0] == "path" for e in errors):
        return await error_page(request, 404, f"There is no page at {request.url.path}: {words}.")
    return await error_page(
        request, 422, f"This address cannot be shown: {words}. Check the link you followed."
    )


async def http_page(request: Request, exc: StarletteHTTPException) -> Response:
    status = exc.status_code
    if status == 404:
        message = (
            f"There is no page at {request.url.path}. Check the address, or start again "
            "from the start page."
        )
    elif status == 405:
        message = (
            f"{request.url.path} does not answer a {request.method} request. Use the links "
            "and buttons of the pages rather than typing this address."
        )
    else:
        message = exc.detail if isinstance(exc.detail, str) else "The request failed."
    response = await error_page(request, status, message)
    if exc.headers:
        response.headers.update(exc.headers)  # 405 says which methods are allowed
    return response


async def failure_page(request: Request, exc: Exception) -> Response:
    if unavailable(exc):
        log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
        response = await error_page(
            request,
            503,
            "loadbell cannot reach its database right now, so nothing was changed. Try "
            "again in a few seconds.",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER)
        return response
    # The traceback goes to the server log, under the request id, not to the browser.
    ident = log_failure(request, exc)
    return await error_page(
        request,
        500,
        f"loadbell failed while making this page. Try again; if it keeps failing, tell your "
        f"administrator the request id {ident}: the server log has the details.",
    )


async def refusal_page(request: Request, exc: ServiceError) -> Response:
    """An operation's refusal outside a page handler (those catch it themselves)."""
    return await error_page(request, http_status(exc), exc.message)


def install(app: FastAPI) -> None:
    """Wrap the API's JSON error handlers (installed first, by ``api.errors.install``)."""
    pages: dict[type[Exception], PageFor] = {
        RequestValidationError: validation_page,
        StarletteHTTPException: http_page,
        Exception: failure_page,
        ServiceError: refusal_page,
        **{error: failure_page for error in DATABASE_ERRORS},
    }
    for exc_class, page in pages.items():
        json_handler: Handler = app.exception_handlers[exc_class]
        app.add_exception_handler(exc_class, _either(json_handler, page))


def _either(json_handler: Handler, page: PageFor) -> Handler:
    async def handle(request: Request, exc: Any) -> Response:
        if not is_api(request):
            return await page(request, exc)
        answer = json_handler(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    return handle
