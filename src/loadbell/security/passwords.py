"""Password hashing for people who sign in to the web pages (argon2id).

Unlike API tokens (256 random bits, SHA-256 is enough), passwords are chosen by people and
must be slow to guess offline: argon2id with the library's current defaults (RFC 9106's
low-memory profile). ``verify`` never raises for a wrong or malformed hash.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 accepts more; a cap keeps one request from hashing megabytes

_hasher = PasswordHasher()


def check_strength(password: str) -> str | None:
    """A sentence for the user when ``password`` is refused, else None."""
    if len(password) < MIN_LENGTH:
        return f"use at least {MIN_LENGTH} characters (a few words make a good password)"
    if len(password) > MAX_LENGTH:
        return f"use at most {MAX_LENGTH} characters"
    if password.strip() == "":
        return "a password cannot be only spaces"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored or len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def fingerprint(stored: str | None) -> str:
    """A short digest of the stored hash. Sessions carry it, so changing a password signs
    out every other session of that user."""
    return hashlib.sha256((stored or "").encode()).hexdigest()[:16]


def generate_initial() -> str:
    """An initial password for an invited member: shown once, to be changed on sign-in."""
    return secrets.token_urlsafe(12)
