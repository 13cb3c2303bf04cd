"""The published payload schemas and the AsyncAPI document: public, no token.

They describe what any loadbell sends, not anything stored, so a receiver's author (or
their CI) can fetch them without an account (docs/decisions.md). ``/schemas/{name}``
takes the name with or without ``.json``, so the AsyncAPI document's relative
``$ref: schemas/<name>.json`` resolves against ``/api/v1/asyncapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from loadbell.api.responses import errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.formats import asyncapi
from loadbell.formats.schemas import find, published
from loadbell.services.errors import NotFound

router = APIRouter(tags=["schemas"], responses=errors(500, 503))

SCHEMA_MEDIA = "application/schema+json"


class SchemaEntry(BaseModel):
    name: str = Field(description="what GET /api/v1/schemas/{name} takes")
    title: str
    format: str = Field(
        description="the webhook format (loadimpact, ...) or chat kind (slack, ...)"
    )
    events: list[str] = Field(description="the events whose bodies it describes")
    url: str = Field(description="where it is served, under the server's public URL")


class SchemaIndex(BaseModel):
    items: list[SchemaEntry]


class JsonDocument(BaseModel):
    """A JSON document (a JSON Schema, or the AsyncAPI document)."""

    model_config = {"extra": "allow"}


@router.get("/schemas", response_model=None, responses=ok(SchemaIndex))
async def list_schemas(state: AppState = Depends(get_state)) -> dict[str, Any]:
    """Every published payload schema: one per body loadbell sends (docs/schemas/)."""
    base = f"{state.settings.base_url.rstrip('/')}/api/v1/schemas"
    return {"items": [s.entry(f"{base}/{s.name}") for s in published().values()]}


@router.get(
    "/schemas/{name}",
    response_model=None,
    responses={
        200: {
            "description": "The JSON Schema (draft 2020-12)",
            "content": {SCHEMA_MEDIA: {"schema": JsonDocument.model_json_schema()}},
        },
        **errors(404),
    },
)
async def get_schema(name: str) -> JSONResponse:
    schema = find(name)
    if schema is None:
        raise NotFound(
            f"schema '{name}' not found; the published schemas are: {', '.join(published())}"
        )
    return JSONResponse(schema.document, media_type=SCHEMA_MEDIA)


@router.get("/asyncapi.json", response_model=None, responses=ok(JsonDocument))
async def get_asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the outbound webhooks (docs/asyncapi.json)."""
    return asyncapi.document()
