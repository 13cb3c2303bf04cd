"""Standard Webhooks signing (v1, symmetric), for webhook channels that enable it.

Three headers go alongside the format's own:

- ``webhook-id``: the delivery id, the same on every retry (receivers de-duplicate on it);
- ``webhook-timestamp``: unix seconds when this attempt was rendered;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one
  entry per secret still valid, separated by spaces.

A secret is ``whsec_`` + base64 of 24 to 64 random bytes; the HMAC key is the decoded
bytes. During a rotation the channel holds the old secret (with ``expires_at``) and the
new one: both sign until the old one expires, so receivers can switch at any moment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from loadbell.values import ConfigError

FIELD = "config.signing_secrets"
PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the spec's minimum (192 bits)
MAX_KEY_BYTES = 64  # the spec's maximum (512 bits)
MAX_SECRETS = 10
HEADER_NAMES = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})

GENERATE_HINT = (
    "create one with: python -c \"import base64, secrets; print('whsec_' + "
    'base64.b64encode(secrets.token_bytes(32)).decode())"'
)


class SigningError(RuntimeError):
    """Nothing can sign: every secret of the channel has expired."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret. Raises ValueError with a user message."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"must start with '{PREFIX}'; {GENERATE_HINT}")
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the part after '{PREFIX}' is not valid base64; {GENERATE_HINT}"
        ) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"decodes to {len(key)} bytes; use {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random "
            f"bytes; {GENERATE_HINT}"
        )
    return key


def _expiry(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise ConfigError(field, "must be an ISO 8601 time such as 2025-08-01T00:00:00Z")
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def validate_secrets(value: Any) -> list[dict[str, str]]:
    """Clean ``config.signing_secrets`` into ``[{"secret": ..., "expires_at"?: ...}]``.

    Accepts plain strings and ``{"secret", "expires_at"}`` objects. An empty list turns
    signing off.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(
            FIELD,
            'must be a list such as ["whsec_..."] or '
            '[{"secret": "whsec_...", "expires_at": "2025-08-01T00:00:00Z"}]',
        )
    if len(value) > MAX_SECRETS:
        raise ConfigError(FIELD, f"at most {MAX_SECRETS} secrets")
    clean: list[dict[str, str]] = []
    live = 0
    now = datetime.now(UTC)
    for i, item in enumerate(value):
        field = f"{FIELD}[{i}]"
        entry = {"secret": item} if isinstance(item, str) else item
        if not isinstance(entry, Mapping) or not isinstance(entry.get("secret"), str):
            raise ConfigError(field, 'must be "whsec_..." or {"secret": "whsec_...", ...}')
        unknown = set(entry) - {"secret", "expires_at"}
        if unknown:
            raise ConfigError(
                f"{field}.{sorted(unknown)[0]}", "unknown key; use secret, expires_at"
            )
        secret = entry["secret"].strip()
        try:
            decode_secret(secret)
        except ValueError as exc:
            raise ConfigError(f"{field}.secret", str(exc)) from None
        expires = _expiry(entry.get("expires_at"), f"{field}.expires_at")
        out = {"secret": secret}
        if expires is not None:
            out["expires_at"] = expires.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if expires is None or expires > now:
            live += 1
        clean.append(out)
    if clean and not live:
        raise ConfigError(
            FIELD, "every secret has expired; add a new one (without expires_at, or a later one)"
        )
    return clean


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    message_id: str,
    body: bytes,
    secrets: Sequence[Mapping[str, str]],
    now: float | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed by every secret not yet expired."""
    now = time.time() if now is None else now
    keys = [
        decode_secret(s["secret"])
        for s in secrets
        if not s.get("expires_at") or datetime.fromisoformat(s["expires_at"]).timestamp() > now
    ]
    if not keys:
        raise SigningError(
            "every signing secret of this channel has expired; add a new one to "
            "config.signing_secrets"
        )
    timestamp = int(now)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, message_id, timestamp, body) for k in keys),
    }
