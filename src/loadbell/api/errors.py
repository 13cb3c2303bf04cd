"""Every error is JSON: ``{"error": code, "message": text, "field": dotted.path | null}``.

Messages are written for the person reading them: what was wrong, which field, what to do.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loadbell.api.request_context import request_id
from loadbell.services.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotConfigured,
    NotFound,
    ServiceError,
    UpstreamFailed,
)
from loadbell.store.db import DATABASE_ERRORS, unavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer that only HTTP knows about (a missing token is a 401); operations raise
    the domain errors of ``services/errors.py``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


# The HTTP status of each kind of refusal an operation raises.
HTTP_STATUS: dict[type[ServiceError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    UpstreamFailed: 502,
    NotConfigured: 503,
}


def http_status(exc: ServiceError) -> int:
    for kind in type(exc).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 400


def _body(code: str, message: str, field: str | None, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, "field": field, **extra}


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _explain(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field; remove it (see /docs for the accepted fields)"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a JSON integer, not {err.get('input')!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, not {err.get('input')!r}"
    return str(err.get("msg", "is invalid")).removeprefix("Value error, ")


# Seconds a client should wait before trying again while the database is unreachable.
RETRY_AFTER = 5
UNAVAILABLE = (
    "the database is unreachable right now, so nothing was changed; try again in a few "
    "seconds (the server keeps trying to reach it)"
)


def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After: the database went away (down, restarting, locked)."""
    log.warning(
        "request %s: %s %s: database unavailable: %s",
        request_id() or "-",
        request.method,
        request.url.path,
        _first_line(exc),
    )
    return JSONResponse(
        _body("unavailable", UNAVAILABLE, None),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER)},
    )


def log_failure(request: Request, exc: Exception) -> str:
    """Log an unexpected error with its traceback and request id; returns the id."""
    ident = request_id() or "-"
    log.error("request %s: %s %s failed", ident, request.method, request.url.path, exc_info=exc)
    return ident


def _internal(request: Request, exc: Exception) -> JSONResponse:
    # The body says nothing of what failed (no exception text, SQL or parameters): those are
    # in the log, under the same request id.
    ident = log_failure(request, exc)
    return JSONResponse(
        _body(
            "internal",
            f"the server failed while handling this request (request id {ident}); nothing "
            "is known to have changed. Try again; if it keeps failing, give your "
            "administrator the request id: the server log has the details.",
            None,
            request_id=ident,
        ),
        status_code=500,
    )


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}"


def _count_database_error(request: Request) -> None:
    state = getattr(request.app.state, "loadbell", None)
    if state is not None and state.metrics is not None:
        state.metrics.database_error("api")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(ServiceError)
    async def _refused(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.message, exc.field), status_code=http_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        for err in errors:
            if err.get("type") == "json_invalid":
                ctx = err.get("ctx") or {}
                return JSONResponse(
                    _body(
                        "malformed_json",
                        f"the request body is not valid JSON ({ctx.get('error', 'parse error')}); "
                        "send a JSON object with Content-Type: application/json",
                        None,
                    ),
                    status_code=400,
                )
        details = [{"field": _loc(tuple(e["loc"])), "message": _explain(e)} for e in errors]
        first = details[0] if details else {"field": "body", "message": "is invalid"}
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return JSONResponse(
            _body("invalid", message, first["field"], errors=details), status_code=422
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DATABASE_ERRORS) or unavailable(exc):
            _count_database_error(request)
        if unavailable(exc):
            return database_unavailable(request, exc)
        return _internal(request, exc)

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        # Registered for the database's own errors, so that Starlette treats them as
        # handled: a 503 for an outage is expected, and must not log a traceback.
        return await _unexpected(request, exc)

    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _database)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; the API lives under /api/v1 (see /docs)"
        return JSONResponse(
            _body(code, message, None), status_code=exc.status_code, headers=exc.headers
        )
