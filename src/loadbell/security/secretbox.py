"""Encryption of secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``LOADBELL_SECRET_KEY`` (any string: it is stretched with SHA-256) or,
when that is unset, from a key file generated on first run with mode 0600. Every process
that shares a database must use the same key, so run them from the same directory or set
``LOADBELL_SECRET_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

_OPENED_MAX = 4096  # opened values kept in memory (one per channel or override, in practice)


class SecretKeyError(RuntimeError):
    pass


class SecretBox:
    def __init__(self, key_material: str) -> None:
        digest = hashlib.sha256(key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._opened: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, secret_key: str | None, key_file: Path) -> SecretBox:
        if secret_key:
            return cls(secret_key)
        if key_file.exists():
            return cls(key_file.read_text().strip())
        material = base64.urlsafe_b64encode(os.urandom(32)).decode()
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(material + "\n")
        return cls(material)

    def seal(self, values: dict[str, Any]) -> str | None:
        if not values:
            return None
        return self._fernet.encrypt(orjson.dumps(values)).decode()

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
