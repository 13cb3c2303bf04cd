"""Refuse oversized request bodies before anything parses them (HTTP 413).

The check runs in ``api/edge.py``: a body with a ``Content-Length`` is refused on the
header alone (the server frames the body by it, so checking it is enough); a chunked body
has no declared size, so it is read here up to the limit and handed on whole. (Raising from
inside ``receive`` would not work: the framework turns any error while reading the body
into a generic 400.)
"""

from __future__ import annotations

from starlette.types import Receive

from loadbell.api.asgi_answer import Answer, asgi_json_answer

# What read_capped returns for a body past the limit.
TOO_LARGE = object()


def too_large(max_bytes: int) -> Answer:
    """The 413 ``body_too_large`` for a limit of ``max_bytes``, built once."""
    return asgi_json_answer(
        413,
        {
            "error": "body_too_large",
            "message": f"the request body is larger than {max_bytes} bytes; "
            "send less (metrics documents should be summaries, not raw samples)",
            "field": None,
        },
    )


async def read_capped(receive: Receive, max_bytes: int) -> bytes | object | None:
    """The whole body, or :data:`TOO_LARGE` once it passes ``max_bytes``, or None when the
    client went away."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > max_bytes:
            return TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
