"""An answer an ASGI layer sends itself, before or instead of the framework: admission's
503 (``admission.py``), the body limit's 413 (``limits.py``), the JSON guard's 400
(``json_body.py``). Built once where it can be, then sent with :func:`send_answer`. A
handler's own orjson answer is ``json_answer.py``.
"""

from __future__ import annotations

import orjson
from starlette.types import Send

# Status, body and headers.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


async def send_answer(send: Send, answer: Answer) -> None:
    """Send an answer built beforehand (its headers copied: a later layer may add some)."""
    status, body, headers = answer
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def asgi_json_answer(
    status: int, content: object, extra: list[tuple[bytes, bytes]] | None = None
) -> Answer:
    """``content`` as a JSON answer, with its length and any ``extra`` headers."""
    body = orjson.dumps(content)
    return (
        status,
        body,
        [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(extra or []),
        ],
    )
