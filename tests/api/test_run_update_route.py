"""PATCH /runs/{id}: the usual request is answered as FastAPI's handler answers it, by the
edge's direct route (D82) with the answer the route class gives it too; every other
request is left to FastAPI (api/runs.py: RunUpdateRoute, answer_usual, D71)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.support import new_run, set_status
from conftest import Server
from loadbell.api import runs
from loadbell.domain.roles import Role
from loadbell.services.access import Principal

JSON = "application/json"  # what the route's own handler reads
# FastAPI reads this as JSON too, and the route's own handler leaves it to FastAPI.
JSON_UTF8 = "application/json; charset=utf-8"


class Taken:
    """Counts the requests the route's own handler took (it looks the principal up itself;
    FastAPI's handler calls the function its ``Depends`` holds)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        principal = runs.current_principal

        async def counted(request: Any) -> Principal:
            self.count += 1
            return await principal(request)

        monkeypatch.setattr(runs, "current_principal", counted)


def _steady(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without the time of the update (a repeat sets it too)."""
    return {k: v for k, v in answer.items() if k != "updated_at"}


async def _patch(
    server: Server, path: str, body: bytes, content_type: str, token: str | None = None
) -> httpx.Response:
    async with server.client(token) as client:
        return await client.patch(path, content=body, headers={"Content-Type": content_type})


async def test_usual_and_other_requests_get_the_same_answers(
    app_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request answered by the route's own handler gets the status and body that
    FastAPI's handler gives it; those it does not take go to FastAPI's."""
    async with app_server.client() as api:
        run = await new_run(api)
        await set_status(api, run["id"], 2)
    rid = run["id"]
    taken = Taken(monkeypatch)
    cases: list[tuple[str, bytes, str | None, bool]] = [
        # (path, body, token, taken by the route's own handler as application/json)
        (f"/runs/{rid}", b'{"status": 2}', None, True),  # a repeat: the run as it is
        (f"/runs/00{rid}", b'{"status": 2}', None, True),  # leading zeros: the same run
        (f"/runs/{rid}", b'{"result": "passed"}', None, True),
        ("/runs/987654321", b'{"status": 2}', None, True),  # 404
        (f"/runs/{rid}", b'{"status": 1}', None, True),  # 409: backwards
        (f"/runs/{rid}", b'{"status": 2}', "lb_wrong", True),  # 401
        (f"/runs/{rid}", b'{"status": 99}', None, False),  # not a status: 422
        (f"/runs/{rid}", b'{"status": "2"}', None, False),  # a string: 422
        (f"/runs/{rid}", b'{"state": 2}', None, False),  # an unknown field: 422
        (f"/runs/{rid}", b"[]", None, False),  # not an object: 422
        (f"/runs/{rid}", b"null", None, False),
        (f"/runs/{rid}", b"", None, False),  # no body
        (f"/runs/{rid}", b'{"status": 2', None, False),  # not JSON
        ("/runs/abc", b'{"status": 2}', None, False),  # not an id: 422
        ("/runs/-1", b'{"status": 2}', None, False),
        ("/runs/%C2%B2", b'{"status": 2}', None, False),  # a digit, not an ASCII one
        # The token is checked before the body is validated, by either handler: 401.
        (f"/runs/{rid}", b'{"status": 99}', "lb_wrong", False),
        ("/runs/abc", b'{"status": 2}', "lb_wrong", False),
    ]
    for path, body, token, usual in cases:
        before = taken.count
        ours = await _patch(app_server, path, body, JSON, token)
        assert taken.count - before == int(usual), (path, body)
        theirs = await _patch(app_server, path, body, JSON_UTF8, token)
        assert taken.count - before == int(usual), (path, body)
        assert ours.status_code == theirs.status_code, (path, body, ours.text, theirs.text)
        assert _steady(ours.json()) == _steady(theirs.json()), (path, body)
        assert ours.headers["content-type"] == theirs.headers["content-type"]


async def test_overrides_and_fastapi_telemetry_go_to_fastapi(
    app_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a dependency overridden, or FastAPI's OpenTelemetry tracing the request,
    FastAPI's handler answers: the override applies, the tracing sees its operations."""
    async with app_server.client() as api:
        run = await new_run(api)
    depends_on = runs.current_principal  # what the route's Depends holds
    taken = Taken(monkeypatch)
    app: Any = app_server.app

    async def owner() -> Principal:  # whatever the token says
        return Principal(run["user_id"], "owner", 0, None, {run["organization_id"]: Role.OWNER})

    monkeypatch.setitem(app.dependency_overrides, depends_on, owner)
    r = await _patch(app_server, f"/runs/{run['id']}", b'{"status": 2}', JSON, "lb_wrong")
    assert r.status_code == 200, r.text  # the override answered for the token
    assert taken.count == 0
    app.dependency_overrides.clear()

    monkeypatch.setattr(runs, "get_telemetry_data", lambda: object())
    r = await _patch(app_server, f"/runs/{run['id']}", b'{"status": 3}', JSON)
    assert r.status_code == 200, r.text
    assert taken.count == 0
