"""Masking secrets for API responses and attempt logs."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

MASK = "****"

# Header names whose values are always secret, whatever the channel says.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "webhook-signature"}
)


def mask_url(url: str) -> str:
    """Keep scheme, host and port of http(s) URLs so people recognise the target; hide
    path and query, where webhook services put their tokens.

    Other schemes (Apprise's ``tgram://``, ``pover://`` ...) keep tokens in the host or
    user part, so only the scheme is shown.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        return f"{scheme}://{MASK}" if scheme else MASK
    return mask_path(url)


def mask_path(url: str) -> str:
    """``scheme://host:port/****``: for URLs whose host is known to be safe to show."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK
    host = parts.hostname or ""
    tail = "/" + MASK if (parts.path not in ("", "/") or parts.query) else parts.path
    return f"{parts.scheme}://{host}{port}{tail}"


def mask_headers(headers: Mapping[str, str], secret_names: Collection[str]) -> dict[str, str]:
    """Mask the channel's custom header values and well-known credential headers."""
    hidden = _hidden_names(frozenset(secret_names))
    return {k: (MASK if k.lower() in hidden else v) for k, v in headers.items()}


@functools.lru_cache(maxsize=256)
def _hidden_names(secret_names: frozenset[str]) -> frozenset[str]:
    # Every attempt masks its headers; a channel's secret names are the same each time.
    return SENSITIVE_HEADERS | {n.lower() for n in secret_names}
