"""Direct routes (api/direct.py, D82): the usual run update is answered by loadbell's edge,
past the router; what its answer leaves, and every other request, goes through the
framework; errors get the app's own handlers either way."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.routing import Route

from api.support import new_run, set_status
from conftest import Server
from loadbell.api import runs
from loadbell.api.direct import Direct, DirectRoute, handler_for


class Parent(Exception):
    pass


class Child(Parent):
    pass


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"handled": type(exc).__name__}, status_code=418)


def test_handlers_are_found_as_starlettes_exception_layer_finds_them() -> None:
    """By an HTTPException's status first, then by the nearest class; never the handler
    for Exception or for 500, which Starlette leaves to its outermost layer."""

    def named(name: str) -> Any:
        async def handler(request: Request, exc: Exception) -> None:
            return None

        handler.__name__ = name
        return handler

    handlers = {
        404: named("404"),
        500: named("500"),
        HTTPException: named("http"),
        Parent: named("parent"),
        Exception: named("exception"),
    }
    assert handler_for(handlers, HTTPException(404)).__name__ == "404"  # type: ignore[union-attr]
    assert handler_for(handlers, HTTPException(409)).__name__ == "http"  # type: ignore[union-attr]
    assert handler_for(handlers, HTTPException(500)).__name__ == "http"  # type: ignore[union-attr]
    assert handler_for(handlers, Child()).__name__ == "parent"  # type: ignore[union-attr]
    assert handler_for(handlers, ValueError()) is None
    assert handler_for({}, HTTPException(404)) is None


def _direct_app(answer: Any) -> tuple[FastAPI, Direct]:
    app = FastAPI()
    app.add_exception_handler(Parent, _answer)
    route = Route("/things/{thing}", lambda request: None, methods=["PATCH"])
    direct = Direct([DirectRoute("PATCH", re.compile(r"/things/(?P<thing>[0-9]+)"), route, answer)])
    return app, direct


async def _serve(app: FastAPI, direct: Direct, method: str, path: str, **scope: Any) -> list[Any]:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    full = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
        "app": app,
        **scope,
    }
    taken = await direct.serve(full, receive, send)
    return sent if taken else []


async def test_a_direct_route_answers_with_its_path_parameters_and_route() -> None:
    seen: list[Any] = []

    async def answer(request: Request) -> JSONResponse:
        seen.append((request.path_params, request.scope["route"].path))
        return JSONResponse({"ok": True})

    app, direct = _direct_app(answer)
    sent = await _serve(app, direct, "PATCH", "/things/12")
    assert sent[0]["status"] == 200
    assert seen == [({"thing": "12"}, "/things/{thing}")]
    # Another method, another path, a root path: the framework's, untouched.
    assert await _serve(app, direct, "GET", "/things/12") == []
    assert await _serve(app, direct, "PATCH", "/things/12/") == []
    assert await _serve(app, direct, "PATCH", "/things/x") == []
    assert await _serve(app, direct, "PATCH", "/things/12", root_path="/lb") == []
    assert len(seen) == 1


async def test_an_answer_of_none_leaves_the_request_to_the_framework() -> None:
    async def answer(request: Request) -> None:
        return None

    app, direct = _direct_app(answer)
    scope: dict[str, Any] = {"type": "http", "method": "PATCH", "path": "/things/12", "app": app}

    async def nothing(*_: Any) -> Any:
        raise AssertionError("nothing is received or sent on the way back to the router")

    assert await direct.serve(scope, nothing, nothing) is False
    # The router sets what it matched: nothing of the direct route's is left for it.
    assert "path_params" not in scope and "route" not in scope


async def test_errors_get_the_apps_handlers_or_go_on_to_the_edge() -> None:
    async def raises(request: Request) -> None:
        raise Child

    app, direct = _direct_app(raises)
    sent = await _serve(app, direct, "PATCH", "/things/12")
    assert sent[0]["status"] == 418
    assert sent[1]["body"] == b'{"handled":"Child"}'

    async def unhandled(request: Request) -> None:
        raise ValueError("nobody's")

    app, direct = _direct_app(unhandled)
    with pytest.raises(ValueError, match="nobody's"):
        await _serve(app, direct, "PATCH", "/things/12")


async def test_the_usual_run_update_is_answered_past_the_router(
    app_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route's own handler never sees the usual run update (the edge answered it); what
    the direct route leaves (a content type FastAPI reads as JSON too) reaches the route,
    and both get one answer; a 404 on the direct path is the app's handler's."""
    async with app_server.client() as api:
        run = await new_run(api)
        await set_status(api, run["id"], 2)
    reached: list[str] = []
    usual = runs.answer_usual  # the direct route holds its own reference

    async def counted(request: Request) -> Any:
        reached.append(request.headers["content-type"])
        return await usual(request)

    monkeypatch.setattr(runs, "answer_usual", counted)  # what the route's handler calls
    async with app_server.client() as api:
        path = f"/runs/{run['id']}"
        direct = await api.patch(
            path, content=b'{"status": 2}', headers={"Content-Type": "application/json"}
        )
        routed = await api.patch(
            path,
            content=b'{"status": 2}',
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        missing = await api.patch("/runs/987654321", json={"status": 2})
    assert reached == ["application/json; charset=utf-8"]
    assert direct.status_code == routed.status_code == 200
    assert direct.json()["status"] == routed.json()["status"] == 2
    assert missing.status_code == 404, missing.text  # the app's handler, on the direct path
    assert missing.json()["error"] == "not_found"


async def test_a_database_error_on_the_direct_path_is_a_503(
    app_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's errors get the app's handler for them on the direct path too."""
    async with app_server.client() as api:
        run = await new_run(api)

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise sa_exc.OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(runs.runs, "patch_run", unavailable)
    async with app_server.client() as api:
        r = await api.patch(f"/runs/{run['id']}", json={"status": 2})
    assert r.status_code == 503, r.text
    assert "Retry-After" in r.headers
