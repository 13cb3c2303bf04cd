"""The AsyncAPI 3.0 document of the outbound webhooks: structurally valid, every $ref
resolves (in the document, and to the schema files beside it), and docs/asyncapi.json is
the same document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadbell.formats import asyncapi
from loadbell.formats.schemas import published

DOCS = Path(__file__).resolve().parents[2] / "docs"

# AsyncAPI 3.0.0's fixed fields per object (https://www.asyncapi.com/docs/reference/specification/v3.0.0);
# "x-" extensions are allowed everywhere.
ROOT = {
    "asyncapi",
    "id",
    "info",
    "servers",
    "defaultContentType",
    "channels",
    "operations",
    "components",
}
INFO = {
    "title",
    "version",
    "description",
    "termsOfService",
    "contact",
    "license",
    "tags",
    "externalDocs",
}
CHANNEL = {
    "address",
    "messages",
    "title",
    "summary",
    "description",
    "servers",
    "parameters",
    "tags",
    "externalDocs",
    "bindings",
}
OPERATION = {
    "action",
    "channel",
    "title",
    "summary",
    "description",
    "security",
    "tags",
    "externalDocs",
    "bindings",
    "traits",
    "messages",
    "reply",
}
MESSAGE = {
    "headers",
    "payload",
    "correlationId",
    "contentType",
    "name",
    "title",
    "summary",
    "description",
    "tags",
    "externalDocs",
    "bindings",
    "examples",
    "traits",
}


def _fields(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = {k for k in obj if not k.startswith("x-")} - allowed
    assert not unknown, f"{where}: fields AsyncAPI 3.0 does not define: {sorted(unknown)}"


def _pointer(doc: Any, pointer: str) -> Any:
    node = doc
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"#/{pointer} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def check_structure(doc: dict[str, Any], base: Path) -> None:
    """Fail naming what breaks AsyncAPI 3.0's structure or a $ref that does not resolve."""
    _fields(doc, ROOT, "root")
    assert doc["asyncapi"] == "3.0.0"
    _fields(doc["info"], INFO, "info")
    assert doc["info"]["title"] and doc["info"]["version"]
    for name, channel in doc["channels"].items():
        _fields(channel, CHANNEL, f"channels.{name}")
        assert channel["address"] is None or isinstance(channel["address"], str)
        assert channel["messages"], f"channel {name} has no messages"
    for name, op in doc["operations"].items():
        _fields(op, OPERATION, f"operations.{name}")
        assert op["action"] in ("send", "receive")
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        for message in op["messages"]:  # 3.0: an operation's messages are its channel's
            assert message["$ref"].startswith(channel_ref + "/messages/"), message
    for name, message in doc["components"]["messages"].items():
        _fields(message, MESSAGE, f"components.messages.{name}")
        payload = message["payload"]
        assert set(payload) == {"schemaFormat", "schema"}  # a Multi Format Schema Object
        assert payload["schemaFormat"] == asyncapi.SCHEMA_FORMAT
        assert _pointer(doc, message["headers"]["$ref"].removeprefix("#"))["type"] == "object"
    for ref in _refs(doc):
        if ref.startswith("#"):
            _pointer(doc, ref.removeprefix("#"))
        else:
            target = base / ref
            assert target.is_file(), f"$ref {ref} does not resolve from {base}"
            json.loads(target.read_text())


def test_document_is_structurally_valid_asyncapi_3() -> None:
    """The built document passes the structural check against docs/ (where the schemas are)."""
    check_structure(asyncapi.document(), DOCS)


def test_every_published_schema_is_a_message() -> None:
    """Each schema file is one message, on the channel of its format, with its events."""
    doc = asyncapi.document()
    messages = doc["components"]["messages"]
    assert set(messages) == set(published())
    refs = {r for c in doc["channels"].values() for r in _refs(c)}
    assert refs == {f"#/components/messages/{name}" for name in published()}
    assert messages["loadimpact-run"]["x-loadbell-events"] == ["test.started", "test.finished"]


def test_headers_and_signature_are_described() -> None:
    """Webhook channels carry their format's headers and the Standard Webhooks signature."""
    schemas = asyncapi.document()["components"]["schemas"]
    loadimpact = schemas["headers-webhook-loadimpact"]
    assert {"X-LoadImpact-ID", "X-LoadImpact-Event", "User-Agent", "Content-Type"} <= set(
        loadimpact["required"]
    )
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(
        schemas["headers-webhook-loadmance"]["properties"]
    )
    assert "webhook-signature" not in schemas["headers-slack"]["properties"]
    assert "HMAC-SHA256" in asyncapi.document()["x-loadbell-signature"]["description"]


def test_a_broken_reference_is_caught(tmp_path: Path) -> None:
    """The check fails on a $ref to a schema file that is not there (so it can fail)."""
    doc = json.loads(asyncapi.render(asyncapi.document()))
    try:
        check_structure(doc, tmp_path)  # no schemas/ beside it
    except AssertionError as exc:
        assert "does not resolve" in str(exc)
    else:
        raise AssertionError("a missing schema file went unnoticed")


def test_docs_copy_matches() -> None:
    """docs/asyncapi.json is the document as built (run `bin/dev schemas` to update it)."""
    shown = (DOCS / "asyncapi.json").read_text()
    assert shown == asyncapi.render(asyncapi.document()), "run `bin/dev schemas`"
