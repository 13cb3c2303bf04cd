"""The AsyncAPI 3.0 document of loadbell's outbound webhooks, built from the published
schemas (``schemas.py``).

loadbell is the sender: one channel per webhook format and per chat kind, one ``send``
operation on each, one message per published body schema. A message's payload is a
``$ref`` to its JSON Schema file (``schemas/<name>.json``, relative to the document: the
API serves both under ``/api/v1/``, docs/ keeps both side by side), and its headers are
the ones the format owns (``loadimpact.py``, ``loadmance.py``), plus the Standard Webhooks
signature headers (``signing.py``) on a webhook channel with ``signing_secrets``.

The document is built in code so that it cannot drift from the formats; docs/asyncapi.json
is a copy (tests/formats/test_asyncapi.py compares it).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from loadbell import __version__
from loadbell.domain import k6cloud
from loadbell.formats import k6cloud as k6cloud_format
from loadbell.formats import loadimpact, loadmance, signing
from loadbell.formats.schemas import PublishedSchema, published

# The formats of the `webhook` channel kind: they may be signed and carry custom headers.
WEBHOOK_FORMATS = ("loadimpact", "loadimpact-legacy", "loadmance", "k6cloud")

SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"

_SIGNATURE = (
    "Standard Webhooks (v1, symmetric), sent when the channel has `config.signing_secrets`: "
    '`v1,<base64 of HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`, where '
    "key is the base64-decoded part of a `whsec_` secret after the prefix. During a rotation "
    "every secret not yet expired signs, and the signatures are separated by spaces: accept "
    "the body when one of them matches, and refuse a timestamp more than 5 minutes away from "
    'now. See docs/wire-formats.md, "Signing".'
)


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _signing_headers() -> dict[str, Any]:
    assert signing.HEADER_NAMES == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    return {
        "webhook-id": _string("The delivery id, the same on every retry (de-duplicate on it)."),
        "webhook-timestamp": _string(
            "Unix seconds when this attempt was rendered.", pattern=r"^[0-9]+$"
        ),
        "webhook-signature": _string(
            "One `v1,<base64>` per secret still valid, separated by spaces. " + _SIGNATURE,
            pattern=r"^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$",
        ),
    }


def k6cloud_identifiers() -> list[str]:
    """What ``X-k6cloud-Event`` carries: every identifier but the selection-only
    ``test.finished.finished``, and the test message's."""
    sent = [name for name in k6cloud.IDENTIFIERS if name != k6cloud.FINISHED_ANY]
    return [*sent, k6cloud.ANY_EVENT]


def _format_headers(fmt: str, events: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(properties, required) of the headers ``fmt`` owns."""
    content_type = {"Content-Type": {"const": "application/json"}}
    if fmt in ("loadimpact", "loadimpact-legacy"):
        agent = loadimpact.USER_AGENT.split(" ", 1)[0]
        props = {
            **content_type,
            "X-LoadImpact-ID": _string("The delivery id (a UUID), the same on every retry."),
            "X-LoadImpact-Event": {"enum": events, "description": "The event."},
            "User-Agent": _string(f"Starts with `{agent}`.", pattern=f"^{agent}"),
        }
        return props, list(props)
    if fmt == "k6cloud":  # issue 13: Grafana Cloud k6's headers
        k6_agent = k6cloud_format.USER_AGENT.split(" ", 1)[0]
        props = {
            **content_type,
            "X-k6cloud-ID": _string("The delivery id (a UUID), the same on every retry."),
            "X-k6cloud-Event": {
                "enum": k6cloud_identifiers(),
                "description": "The full event identifier, e.g. test.finished.failed "
                f"(`{k6cloud.ANY_EVENT}` for a test message).",
            },
            "User-Agent": _string(f"Starts with `{k6_agent}`.", pattern=f"^{k6_agent}"),
        }
        return props, list(props)
    agent = loadmance.USER_AGENT.split("/", 1)[0]
    props = {
        "Content-Type": _string("JSON.", pattern="^application/json"),
        "User-Agent": _string(
            f"`{loadmance.USER_AGENT}`; custom headers may replace it.", pattern=f"^{agent}/"
        ),
    }
    if fmt == "slack_app":
        props["Authorization"] = _string("`Bearer <bot token>` from the install.")
        return props, list(props)
    if fmt == "hipchat":
        props["Authorization"] = _string("`Bearer <config.token>`, when the channel has one.")
    return props, ["Content-Type"]


def _headers(fmt: str, events: list[str]) -> dict[str, Any]:
    props, required = _format_headers(fmt, events)
    out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if fmt in WEBHOOK_FORMATS:
        out["properties"] = {**props, **_signing_headers()}
        out["description"] = (
            "The format's headers; the Standard Webhooks headers when the channel signs; and "
            "the channel's custom `config.headers`, which replace the format's own of the "
            "same name where the format allows it."
        )
    return out


def _channel_name(fmt: str) -> str:
    return ("webhook-" if fmt in WEBHOOK_FORMATS else "") + fmt.replace("_", "-")


def _message(schema: PublishedSchema, fmt_events: list[str]) -> dict[str, Any]:
    return {
        "name": schema.name,
        "title": schema.title,
        "summary": str(schema.document.get("description") or schema.title),
        "contentType": "application/json",
        "headers": {"$ref": f"#/components/schemas/headers-{_channel_name(schema.format)}"},
        "payload": {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {"$ref": f"schemas/{schema.name}.json"},
        },
        "x-loadbell-events": list(schema.events) or fmt_events,
    }


@functools.cache
def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document (built once a process; the schemas do not change)."""
    by_format: dict[str, list[PublishedSchema]] = {}
    for schema in published().values():
        by_format.setdefault(schema.format, []).append(schema)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    for fmt in sorted(by_format):
        name = _channel_name(fmt)
        events = sorted({e for s in by_format[fmt] for e in s.events})
        headers[f"headers-{name}"] = _headers(fmt, events)
        kind = "webhook" if fmt in WEBHOOK_FORMATS else fmt
        channels[name] = {
            "address": None,  # the channel's own URL (config.url, the webhook URL, ...)
            "title": f"{kind} channel" + (f", format {fmt}" if kind == "webhook" else ""),
            "description": (
                f"Where a `{kind}` channel"
                + (f' with `config.format: "{fmt}"`' if kind == "webhook" else "")
                + " POSTs: the URL in its config. Only events the channel subscribes to are "
                "sent, each once per delivery, retried with the same id until it succeeds or "
                "the retry policy gives up (docs/wire-formats.md)."
            ),
            "messages": {
                s.name: {"$ref": f"#/components/messages/{s.name}"} for s in by_format[fmt]
            },
        }
        operations[f"send-{name}"] = {
            "action": "send",
            "title": f"Notify a {kind} receiver",
            "summary": "POST one notification; any 2xx answer is a success.",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{s.name}"} for s in by_format[fmt]],
        }
        for s in by_format[fmt]:
            messages[s.name] = _message(s, events)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "loadbell outbound notifications",
            "version": __version__,
            "description": (
                "The HTTP requests loadbell sends to webhook receivers and chat services: "
                "one channel per webhook format and chat kind, the JSON Schema of every "
                "body (`schemas/<name>.json`), and the headers, signatures included. "
                "Every request is a POST of one JSON body; redirects are not followed, and "
                "an answer other than 2xx is retried or fails (docs/wire-formats.md)."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": headers},
        "x-loadbell-signature": {"scheme": "Standard Webhooks v1", "description": _SIGNATURE},
    }


def render(document: dict[str, Any]) -> str:
    """A document as the files in docs/ hold it: indented, keys in order, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def export(docs: Path) -> list[Path]:
    """Write the copies in ``docs``: ``schemas/<name>.json`` for every published schema and
    ``asyncapi.json``, removing schema copies whose schema is gone. ``bin/dev schemas``
    runs this; returns the files written."""
    folder = docs / "schemas"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    wanted = {f"{name}.json" for name in published()}
    for stale in folder.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    for schema in published().values():
        path = folder / f"{schema.name}.json"
        path.write_text(render(schema.document), encoding="utf-8")
        written.append(path)
    path = docs / "asyncapi.json"
    path.write_text(render(document()), encoding="utf-8")
    return [*written, path]
