"""The published JSON Schemas (draft 2020-12) of the bodies loadbell sends.

Each file in ``src/loadbell/schemas/`` describes one body: a wire format's body for some
events (``loadimpact-run``), or a chat kind's message (``slack``). The files are the
source: this module only reads them, so a new file joins the index (and the AsyncAPI
document, ``asyncapi.py``) by being there. A file says which format or kind it belongs to
and which events it covers in the annotation ``"x-loadbell": {"format": ..., "events":
[...]}``; without one, the file's name is its format and its events are unknown (``[]``).

Served at ``GET /api/v1/schemas`` and ``/api/v1/schemas/{name}``, copied into
``docs/schemas/`` (tests/formats/test_schemas.py compares the copies).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

ANNOTATION = "x-loadbell"
SUFFIX = ".json"


@dataclass(frozen=True)
class PublishedSchema:
    name: str  # the file's name without .json: what GET /api/v1/schemas/{name} takes
    title: str
    format: str  # the webhook format (loadimpact, loadmance, ...) or the chat kind (slack, ...)
    events: tuple[str, ...]  # the events whose bodies it describes
    document: dict[str, Any]

    def entry(self, url: str) -> dict[str, Any]:
        """Its line in the index, ``url`` being where it is served."""
        return {
            "name": self.name,
            "title": self.title,
            "format": self.format,
            "events": list(self.events),
            "url": url,
        }


def _read(name: str, text: str) -> PublishedSchema:
    document = json.loads(text)
    meta = document.get(ANNOTATION)
    meta = meta if isinstance(meta, dict) else {}
    return PublishedSchema(
        name=name,
        title=str(document.get("title") or name),
        format=str(meta.get("format") or name),
        events=tuple(str(e) for e in meta.get("events") or ()),
        document=document,
    )


@functools.cache
def published() -> dict[str, PublishedSchema]:
    """Every schema file of the package, by name, in name order (read once a process)."""
    folder = resources.files("loadbell") / "schemas"
    found = {
        entry.name.removesuffix(SUFFIX): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(SUFFIX)
    }
    return {name: _read(name, found[name]) for name in sorted(found)}


def find(name: str) -> PublishedSchema | None:
    """The schema called ``name`` (``loadimpact-run`` or ``loadimpact-run.json``), if any."""
    return published().get(name.removesuffix(SUFFIX))
