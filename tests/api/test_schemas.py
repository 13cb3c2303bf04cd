"""GET /api/v1/schemas, /api/v1/schemas/{name} and /api/v1/asyncapi.json: public (no
token), the same documents as docs/, and a 404 that names the schemas there are."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from conftest import Server
from loadbell.formats.schemas import published

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def test_index_lists_every_schema_without_a_token(app_server: Server) -> None:
    """The index needs no token and lists name, title, format, events and url of each."""
    async with httpx.AsyncClient(base_url=f"{app_server.url}/api/v1") as anon:
        r = await anon.get("/schemas")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["name"] for i in items] == list(published())
    run = next(i for i in items if i["name"] == "loadimpact-run")
    assert run == {
        "name": "loadimpact-run",
        "title": "loadimpact: test.started and test.finished",
        "format": "loadimpact",
        "events": ["test.started", "test.finished"],
        "url": "http://loadbell.test/api/v1/schemas/loadimpact-run",
    }


async def test_each_schema_is_served_as_in_docs(app_server: Server) -> None:
    """Each schema is served (with or without .json) exactly as docs/schemas/ holds it."""
    async with httpx.AsyncClient(base_url=f"{app_server.url}/api/v1") as anon:
        for name in published():
            r = await anon.get(f"/schemas/{name}")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/schema+json"
            assert r.json() == orjson.loads((DOCS / "schemas" / f"{name}.json").read_bytes())
        r = await anon.get("/schemas/slack.json")
        assert r.status_code == 200 and r.json()["title"] == "Slack incoming webhook message"


async def test_unknown_schema_is_a_404_naming_the_known_ones(app_server: Server) -> None:
    """An unknown name is a 404 whose message says which names exist."""
    async with httpx.AsyncClient(base_url=f"{app_server.url}/api/v1") as anon:
        r = await anon.get("/schemas/loadimpact-nope")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    assert "schema 'loadimpact-nope' not found" in r.json()["message"]
    assert "loadimpact-run" in r.json()["message"]


async def test_asyncapi_is_served_as_in_docs(app_server: Server) -> None:
    """GET /api/v1/asyncapi.json is docs/asyncapi.json, without a token."""
    async with httpx.AsyncClient(base_url=f"{app_server.url}/api/v1") as anon:
        r = await anon.get("/asyncapi.json")
    assert r.status_code == 200, r.text
    assert r.json() == orjson.loads((DOCS / "asyncapi.json").read_bytes())


async def test_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    """The three operations are in the OpenAPI document, and answer no 401: they need no
    token (an operation that needs one documents its 401)."""
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "401" in paths["/api/v1/deliveries/{delivery_id}/request"]["get"]["responses"]
    for path in ("/api/v1/schemas", "/api/v1/schemas/{name}", "/api/v1/asyncapi.json"):
        assert "401" not in paths[path]["get"]["responses"], path
    assert "404" in paths["/api/v1/schemas/{name}"]["get"]["responses"]
