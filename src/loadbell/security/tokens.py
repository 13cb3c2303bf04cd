"""API tokens: random, shown once, stored only as a SHA-256 hash.

SHA-256 (not a slow password hash) is right here: tokens carry 256 bits of randomness, so
there is nothing to brute-force, and every API call must look one up quickly.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "lb_"
# An inbound source's token travels in its URL path: URL-safe, and told apart from API tokens.
INBOUND_PREFIX = "lbin_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_inbound_token() -> str:
    return INBOUND_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    return token[:10]
