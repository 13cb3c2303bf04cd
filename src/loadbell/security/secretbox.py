"""Encryption of secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key material comes from ``LOADBELL_SECRET_KEY`` or, when that is unset, from the key
file (``security/key_file.py``). Each key is any string, stretched with SHA-256. Several
keys may be given, comma-separated, newest first: sealing uses the newest, opening tries
each (``MultiFernet``), so a database can be re-encrypted (``loadbell keys rotate``) while
processes that know both keys keep running. Every process that shares a database must know
the key its secrets were sealed with; ``store/key_check.py`` checks that at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_OPENED_MAX = 4096  # opened values kept in memory (one per channel or override, in practice)

# Keys are separated by commas (LOADBELL_SECRET_KEY) or lines (a key file may hold several).
_SEPARATORS = re.compile(r"[,\n]")


class SecretKeyError(RuntimeError):
    pass


def parse_keys(text: str) -> list[str]:
    """The keys in ``text``, newest first: comma- or line-separated, blanks dropped."""
    return [k.strip() for k in _SEPARATORS.split(text) if k.strip()]


def _fernet(material: str) -> Fernet:
    digest = hashlib.sha256(material.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class SecretBox:
    """Seals with the newest key, opens with any of them."""

    def __init__(self, keys: str | Sequence[str]) -> None:
        self.keys = parse_keys(keys) if isinstance(keys, str) else [k for k in keys if k]
        if not self.keys:
            raise SecretKeyError("no secret key: set LOADBELL_SECRET_KEY or use a key file")
        self._newest = _fernet(self.keys[0])
        self._fernet = MultiFernet([self._newest, *(_fernet(k) for k in self.keys[1:])])
        self._opened: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, secret_key: str | None, key_file: Path) -> SecretBox:
        """The box of ``LOADBELL_SECRET_KEY``, else of an existing key file. It never
        creates the file: start-up does that once the database accepts the new key
        (``services/secret_keys.py``)."""
        if secret_key and parse_keys(secret_key):
            return cls(secret_key)
        try:
            return cls(key_file.read_text())
        except FileNotFoundError:
            raise SecretKeyError(
                f"no secret key: LOADBELL_SECRET_KEY is unset and {key_file} does not exist"
            ) from None

    def seal(self, values: dict[str, Any]) -> str | None:
        if not values:
            return None
        return self._fernet.encrypt(orjson.dumps(values)).decode()

    def opens(self, token: str) -> bool:
        """Whether one of the keys opens ``token``."""
        try:
            self._fernet.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, token: str) -> str | None:
        """``token`` sealed again with the newest key, or None when it already is.

        Raises :class:`SecretKeyError` when no key opens it.
        """
        raw = token.encode()
        try:
            self._newest.decrypt(raw)
            return None
        except InvalidToken:
            pass
        try:
            return self._fernet.rotate(raw).decode()
        except InvalidToken:
            raise SecretKeyError("no key in LOADBELL_SECRET_KEY opens this value") from None

    def open(self, token: str | None) -> dict[str, Any]:
        """The values sealed in ``token`` (a fresh dict the caller may change).

        Every event and every delivery opens its channel's secrets, and a channel's sealed
        value rarely changes, so opened values are kept in memory: decrypting (HMAC check
        plus AES) was a visible share of an API call's CPU.
        """
        if not token:
            return {}
        data = self._opened.get(token)
        if data is None:
            try:
                data = orjson.loads(self._fernet.decrypt(token.encode()))
            except InvalidToken:
                raise SecretKeyError(
                    "cannot decrypt stored secrets: LOADBELL_SECRET_KEY (or the key file) "
                    "differs from the one they were written with"
                ) from None
            if len(self._opened) >= _OPENED_MAX:
                self._opened.clear()
            self._opened[token] = data
        return dict(data)
