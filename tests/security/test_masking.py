"""Masking secret values in free text (response excerpts of the attempt log)."""

from __future__ import annotations

import pytest

from loadbell.security.masking import MASK, mask_secrets, secret_strings


def test_secret_strings_of_headers_urls_and_signing_secrets() -> None:
    """Every string inside the secret values counts, with a credential without its auth
    scheme and a URL's path, query values and password; short strings do not."""
    found = secret_strings(
        [
            {"Authorization": "Bearer s3cret-token", "X-Short": "abc"},
            "https://user:pa55word@hooks.example.com/services/T0/B0?token=qtoken1",
            [{"secret": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}],
        ]
    )
    assert {
        "Bearer s3cret-token",
        "s3cret-token",
        "/services/T0/B0?token=qtoken1",
        "qtoken1",
        "pa55word",
        "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
    } <= found
    assert "abc" not in found and all(len(s) >= 4 for s in found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # every occurrence goes
        ("token s3cret-token and s3cret-token", f"token {MASK} and {MASK}"),
        # the longer value wins over the one it contains
        ("auth: Bearer s3cret-token", f"auth: {MASK}"),
        # an excerpt cut inside a secret has the start masked too
        ("echo: Bearer s3cr", f"echo: {MASK}"),
        # three characters of a secret at the end are not worth masking
        ("ends with s3c", "ends with s3c"),
        # nothing secret: unchanged
        ("all good", "all good"),
    ],
)
def test_mask_secrets(text: str, expected: str) -> None:
    """Occurrences of secret values become ****, longest first, cut-off ones included."""
    secrets = frozenset({"Bearer s3cret-token", "s3cret-token"})
    assert mask_secrets(text, secrets) == expected


def test_mask_secrets_of_a_whole_text_leaves_its_end_alone() -> None:
    """``cut=False``: the text was not cut, so a secret's start at its end is its own
    text; whole secrets inside it are masked all the same."""
    secrets = frozenset({"Bearer s3cret-token", "s3cret-token"})
    assert mask_secrets("echo: Bearer s3cr", secrets, cut=False) == "echo: Bearer s3cr"
    assert mask_secrets("a s3cret-token b", secrets, cut=False) == f"a {MASK} b"
