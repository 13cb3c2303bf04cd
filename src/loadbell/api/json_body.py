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
import re
from typing import Any

import orjson

from loadbell.api.asgi_answer import Answer, asgi_json_answer

MAX_DEPTH = 32  # levels of objects and arrays; loadbell's own documents use under 6
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what a JSON column (and orjson) can hold
_LONG_NUMBER = re.compile(rb"[0-9]{19}")
METHODS = frozenset({"POST", "PUT", "PATCH"})  # the methods whose JSON bodies are checked


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
    return _Unstorable(_too_large(text))


def _too_large(text: str) -> str:
    return f"the integer {text[:30]} does not fit in 64 bits; send a smaller one"


def _constant(name: str) -> _Unstorable:
    return _Unstorable(f"{name} is not a JSON number; send null or leave the key out")


def check(body: bytes) -> None:
    """Raise :class:`Refused` when ``body`` (valid JSON or not) holds what cannot be stored.
    Malformed JSON is left to the framework, which answers it with a 400."""
    if not _LONG_NUMBER.search(body):
        # orjson first: a few times faster. It refuses (raises) NaN, infinities and
        # nesting past its own limit, and then Python's parser finds the value at fault.
        # It would read an integer past 64 bits as a float, so a body with a number of 19
        # digits or more (18 always fit) goes to Python's parser, which keeps it exact.
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            _walk(value, "", 1)
            return
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


def refusal(exc: Refused) -> Answer:
    """The 422 for a body :func:`check` refused, in the API's usual error shape."""
    message = str(exc)
    return asgi_json_answer(
        422,
        {
            "error": "invalid",
            "message": message,
            "field": exc.path,
            "errors": [{"field": exc.path, "message": message.removeprefix(f"{exc.path}: ")}],
        },
    )
