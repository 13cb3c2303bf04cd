"""The OpenAPI document, with links from each create to what can be done with its result.

``POST /channels`` answers a channel whose ``id`` is the ``channel_id`` of
``/channels/{channel_id}`` and of every path below it; the same holds for runs, projects
and load tests. Declaring that as OpenAPI links tells a reader (and a client generator, and
schemathesis' stateful phase) how the operations chain. The links are derived from the
paths, so a new operation under ``/runs/{run_id}`` gets its link without anyone writing it.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

_FIRST_PARAM = re.compile(r"^\{([a-z_]+_id)\}")


def links_from_creates(paths: dict[str, Any]) -> None:
    """Add, to the 201 of each ``POST <collection>``, a link to every operation whose path
    is ``<collection>/{x_id}...``, passing the new resource's ``id`` as ``x_id``."""
    for collection, ops in paths.items():
        created = ops.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links: dict[str, Any] = {}
        for path, path_ops in paths.items():
            rest = path.removeprefix(collection + "/")
            match = _FIRST_PARAM.match(rest) if rest != path else None
            if match is None:
                continue
            for method, op in path_ops.items():
                name = f"{method.upper()} {path.removeprefix(collection)}"
                links[name] = {
                    "operationId": op["operationId"],
                    "parameters": {match.group(1): "$response.body#/id"},
                    "description": f"the created resource's id as `{match.group(1)}`",
                }
        if links:
            created["links"] = links


def install(app: FastAPI) -> None:
    """Serve FastAPI's document with the links added (once: FastAPI keeps the document)."""
    build = app.openapi

    def document() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = build()
        if first:
            links_from_creates(schema.get("paths", {}))
        return schema

    app.openapi = document  # type: ignore[method-assign]  # FastAPI's documented extension point
