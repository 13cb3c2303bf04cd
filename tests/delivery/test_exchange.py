"""What the attempt log keeps of the body sent and of the response's headers: bounded in
size, credentials masked."""

from __future__ import annotations

import pytest

from loadbell.delivery.exchange import (
    HEADER_VALUE_CHARS,
    REQUEST_BODY_BYTES,
    RESPONSE_HEADERS,
    logged_body,
    logged_headers,
)


@pytest.mark.parametrize(
    ("body", "kept", "size"),
    [
        # a small JSON body is kept whole
        (b'{"event":"test.started"}', '{"event":"test.started"}', 24),
        # an empty body
        (b"", "", 0),
        # bytes that are not UTF-8 show as U+FFFD; the size is the bytes'
        (b"ok \xff", "ok \ufffd", 4),
        # a body over the bound is cut, its whole size kept beside it
        (b"x" * (REQUEST_BODY_BYTES + 10), "x" * REQUEST_BODY_BYTES, REQUEST_BODY_BYTES + 10),
    ],
)
def test_the_body_is_kept_up_to_its_bound(body: bytes, kept: str, size: int) -> None:
    """The first 64 KiB as text, and the whole size."""
    assert logged_body(body) == (kept, size)


def test_response_headers_are_masked_joined_and_bounded() -> None:
    """Cookies and credentials are masked (also when repeated), a repeated header is joined,
    values are cut, and no more than the bound of names is kept."""
    many = [(f"X-H{i}", "v") for i in range(RESPONSE_HEADERS + 5)]
    kept = logged_headers(
        [
            ("Set-Cookie", "a=secret1"),
            ("Set-Cookie", "b=secret2"),
            ("WWW-Authenticate", 'Bearer realm="x"'),
            ("Vary", "Accept"),
            ("Vary", "Origin"),
            ("X-Long", "y" * (HEADER_VALUE_CHARS + 100)),
            *many,
        ]
    )
    assert kept["Set-Cookie"] == "****"
    assert kept["WWW-Authenticate"] == "****"
    assert kept["Vary"] == "Accept, Origin"
    assert kept["X-Long"] == "y" * HEADER_VALUE_CHARS
    assert len(kept) == RESPONSE_HEADERS
    assert "secret" not in repr(kept)
