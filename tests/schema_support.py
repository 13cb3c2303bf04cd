"""Checking a body against the published schemas (src/loadbell/schemas/), with jsonschema.

``problems(fmt, event, body)`` names what is wrong: a body must match exactly one of the
schemas of its format that cover its event (Loadmance's ``test.finished`` has two, the
passed and the failed form).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from loadbell.formats.schemas import PublishedSchema, published


def schemas_for(fmt: str, event: str) -> list[PublishedSchema]:
    return [s for s in published().values() if s.format == fmt and event in s.events]


def validator(schema: PublishedSchema) -> Draft202012Validator:
    return Draft202012Validator(schema.document)


def problems(fmt: str, event: str, body: Any) -> list[str]:
    """Empty when ``body`` matches exactly one schema of ``fmt`` for ``event``; else why not."""
    candidates = schemas_for(fmt, event)
    if not candidates:
        return [f"no published schema of format {fmt} covers {event}"]
    found: dict[str, list[str]] = {}
    for schema in candidates:
        found[schema.name] = [
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in validator(schema).iter_errors(body)
        ]
    matched = [name for name, errors in found.items() if not errors]
    if len(matched) == 1:
        return []
    if matched:
        return [f"matches several schemas: {matched}"]
    return [f"{name}: {error}" for name, errors in found.items() for error in errors[:5]]
