"""JSON bodies loadbell can store: refused at the edge (422) when they are not.

Python's JSON parser accepts what loadbell cannot keep: integers of any size (a metrics
document with 2^64 failed with a 500 when it was written to a JSON column), ``NaN`` and
``Infinity`` (not JSON at all; stored as null), and nesting as deep as the parser's stack
(254 levels and more failed on the way to the database). So every JSON request body is
checked before a handler sees it: nesting at most :data:`MAX_DEPTH` levels, integers within
64 bits, no ``NaN`` or infinities. A body that fails gets the usual error body, naming the
path of the value at fault, and nothing runs.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_DEPTH = 32  # levels of objects and arrays; loadbell's own documents use under 6
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what a JSON column (and orjson) can hold
_METHODS = {"POST", "PUT", "PATCH"}


class Refused(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class _Unstorable:
    """Stands in, while parsing, for a value that cannot be stored; the walk that follows
    knows its path and refuses it there."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _int(text: str) -> int | _Unstorable:
    value = int(text)
    if INT_MIN <= value <= INT_MAX:
        return value
    return _Unstorable(f"the integer {text[:30]} does not fit in 64 bits; send a smaller one")


def _constant(name: str) -> _Unstorable:
    return _Unstorable(f"{name} is not a JSON number; send null or leave the key out")


def check(body: bytes) -> None:
    """Raise :class:`Refused` when ``body`` (valid JSON or not) holds what cannot be stored.
    Malformed JSON is left to the framework, which answers it with a 400."""
    try:
        value = json.loads(body, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise Refused("body", _too_deep()) from None
    except ValueError:  # not JSON: the framework's own 400 says so
        return
    _walk(value, "", 1)


def _walk(value: Any, path: str, depth: int) -> None:
    """Refuse an unstorable value or a level too deep, naming its field as the API's other
    errors do (``metrics.requests``; ``body`` for the body itself)."""
    if isinstance(value, _Unstorable):
        raise Refused(path or "body", value.problem)
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    if depth > MAX_DEPTH:
        raise Refused(_outer(path), _too_deep())
    for key, item in items:
        _walk(item, f"{path}.{key}" if path else str(key), depth + 1)


def _outer(path: str) -> str:
    """The field that holds a too-deep value: its path up to the first array index
    (``metrics.deep``, not ``metrics.deep.0.0.0...``)."""
    keys = []
    for part in path.split(".") if path else []:
        if part.isdigit():
            break
        keys.append(part)
    return ".".join(keys) or "body"


def _too_deep() -> str:
    return f"JSON nested deeper than {MAX_DEPTH} levels; send a flatter document"


class JsonGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check(body)
        except Refused as exc:
            await _refuse(send, exc)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


async def _refuse(send: Send, exc: Refused) -> None:
    message = str(exc)
    body = orjson.dumps(
        {
            "error": "invalid",
            "message": message,
            "field": exc.path,
            "errors": [{"field": exc.path, "message": message.removeprefix(f"{exc.path}: ")}],
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
