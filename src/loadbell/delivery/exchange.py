"""What the attempt log keeps of an HTTP exchange besides the status and the response body
excerpt: the request body sent and the response's headers, each bounded in size.

The request body is kept up to :data:`REQUEST_BODY_BYTES` (a template may render up to
1 MiB, formats/template.py), with its whole size beside it, so the log shows the body a
receiver got and says when it was cut. Response headers are kept up to
:data:`RESPONSE_HEADERS` of them, each value cut at :data:`HEADER_VALUE_CHARS`: a receiver
decides their number and size, and a log row must not grow with it. Credentials and cookies
are masked here (``security/masking.py``); the channel's own secret values are masked in
both afterwards, by ``ChannelSetup.redact``, with the rest of the attempt.
"""

from __future__ import annotations

from collections.abc import Iterable

from loadbell.security.masking import MASK, SENSITIVE_HEADERS

REQUEST_BODY_BYTES = 65_536  # what the log keeps of the body sent
RESPONSE_HEADERS = 50  # how many response headers it keeps
HEADER_VALUE_CHARS = 1_024  # of each response header's value

# A response's headers that carry credentials: a session cookie a receiver sets, an
# authentication challenge, besides the request's own credential headers.
SENSITIVE_RESPONSE_HEADERS = SENSITIVE_HEADERS | {"set-cookie", "www-authenticate"}


def logged_body(body: bytes) -> tuple[str, int]:
    """The body as the log keeps it (text, its first :data:`REQUEST_BODY_BYTES`; bytes that
    are not UTF-8 shown as U+FFFD) and its whole size in bytes."""
    return body[:REQUEST_BODY_BYTES].decode(errors="replace"), len(body)


def logged_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Response headers as the log keeps them: repeated names joined with ", ", credential
    values masked, at most :data:`RESPONSE_HEADERS` names, each value cut."""
    out: dict[str, str] = {}
    for name, value in headers:
        if name in out:
            if out[name] != MASK:
                out[name] = f"{out[name]}, {value}"[:HEADER_VALUE_CHARS]
            continue
        if len(out) >= RESPONSE_HEADERS:
            continue
        out[name] = (
            MASK if name.lower() in SENSITIVE_RESPONSE_HEADERS else value[:HEADER_VALUE_CHARS]
        )
    return out
