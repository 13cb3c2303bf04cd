"""Error pages: outside /api a wrong address, a wrong method or a server failure is an HTML
page with a clear sentence; under /api the same errors stay JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from api.support import assert_error
from conftest import Server


@pytest.fixture
async def web(app_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-out visitor of the pages (the errors below come before any sign-in)."""
    async with httpx.AsyncClient(base_url=app_server.url, timeout=30) as client:
        yield client


def assert_page(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html"), r.headers
    assert "Content-Security-Policy" in r.headers
    text = r.text
    assert '<p class="error-text" role="alert">' in text
    for word in words:
        assert word in text, (word, text)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        # a path parameter that is not a number: no such page
        ("/runs/abc", 404, ["There is no page at /runs/abc", "run_id must be a whole number"]),
        # an address nothing answers
        ("/nope", 404, ["There is no page at /nope", "start page"]),
        # a required query parameter left out
        ("/orgs/1/integrations/new", 422, ["kind is missing"]),
    ],
)
async def test_page_errors_are_html(
    web: httpx.AsyncClient, path: str, status: int, words: list[str]
) -> None:
    """Wrong addresses get the HTML error page with what was wrong, never JSON."""
    r = await web.get(path)
    assert_page(r, status, *words)
    assert "/api/v1" not in r.text


async def test_wrong_method_is_html(web: httpx.AsyncClient) -> None:
    """A GET of a POST-only page (sign out) says so in HTML, with the allowed method."""
    r = await web.get("/logout")
    assert_page(r, 405, "does not answer a GET request")
    assert r.headers["allow"] == "POST"


async def test_api_errors_stay_json(web: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """Under /api the same mistakes answer the API's JSON errors."""
    body = assert_error(await web.get("/api/v1/nope"), 404)
    assert "/api/v1" in body["message"]
    assert_error(await api.get("/runs/abc"), 422, "run_id")
    assert_error(await web.delete("/api/v1/healthz"), 405)


async def test_server_failure_is_html_outside_api(
    web: httpx.AsyncClient, app_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception is a 500 page that gives the request id and points to the
    server log, not a trace; the API's 500 stays JSON and reveals nothing of what failed:
    the log has it, under the same request id."""
    app = app_server.app
    assert isinstance(app, FastAPI)

    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM internals WHERE token = 'lb_x'")

    app.add_api_route("/boom", boom)
    app.add_api_route("/api/v1/boom", boom)
    r = await web.get("/boom")
    ident = r.headers["X-Request-ID"]
    assert_page(r, 500, ident, "server log")
    assert "SELECT" not in r.text and "RuntimeError" not in r.text

    r = await web.get("/api/v1/boom", headers={"X-Request-ID": "proxy-id.42"})
    body = assert_error(r, 500)
    assert body["error"] == "internal"
    assert body["request_id"] == r.headers["X-Request-ID"] == "proxy-id.42"
    assert "SELECT" not in r.text and "RuntimeError" not in r.text and "lb_x" not in r.text
    logged = [rec for rec in caplog.records if "proxy-id.42" in rec.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "SELECT secret" in str(logged[0].exc_info[1])


async def test_every_answer_has_a_request_id(web: httpx.AsyncClient) -> None:
    """Each response carries an X-Request-ID, a new one per request unless the client sent
    a plain one; an odd one is replaced."""
    first, second = await web.get("/healthz"), await web.get("/healthz")
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    kept = await web.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    odd = await web.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert odd.headers["X-Request-ID"] not in ("a b\tc", "")
