"""Masking secrets for API responses and attempt logs."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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


# Shorter values are not masked in free text: "****" for every "on" or "1" would hide
# everything and protect nothing.
MIN_SECRET_CHARS = 4


def secret_strings(values: Iterable[Any]) -> frozenset[str]:
    """The strings a receiver might echo back from these secret config values.

    Every string inside them (header values, signing secrets, URLs), and for each also its
    credential without an auth scheme (``s3cret`` of ``Bearer s3cret``), and for URLs the
    path with the query, each query value and the password: the parts a service shows in
    an error message. Strings shorter than :data:`MIN_SECRET_CHARS` are left out.
    """
    found: set[str] = set()
    for value in values:
        for text in _strings(value):
            found.add(text)
            scheme, _, credential = text.partition(" ")
            if credential and scheme.isalpha():
                found.add(credential.strip())
            if "://" in text:
                found.update(_url_parts(text))
    return frozenset(s for s in found if len(s) >= MIN_SECRET_CHARS)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _url_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    out = [v for _, v in parse_qsl(parts.query)]
    if parts.path not in ("", "/"):
        out.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    elif parts.query:
        out.append(parts.query)
    if password:
        out.append(password)
    return out


def mask_secrets(text: str, secrets: frozenset[str], *, cut: bool = True) -> str:
    """``text`` with each occurrence of each of ``secrets`` replaced by ``****``.

    A text that ends inside a secret (an excerpt cut at its size limit) has that start
    masked too, if it is at least :data:`MIN_SECRET_CHARS` long. ``cut=False`` says the
    text is whole, so its end is only what it holds: that check is skipped.
    """
    if not secrets or not text:
        return text
    # Every attempt's body and response headers pass through here, and almost none holds
    # a secret: str's own search is far cheaper than the pattern's alternation, which
    # only runs when a secret is there. A text with nothing to mask is returned as it is.
    if any(s in text for s in secrets):
        text = _pattern(secrets).sub(MASK, text)
    if not cut:
        return text
    tail = 0
    for secret in secrets:
        tail = max(tail, _cut_prefix(text, secret))
    return text[:-tail] + MASK if tail else text


@functools.lru_cache(maxsize=256)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str]:
    # Longest first, so a value that contains another is masked whole.
    return re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))


def _cut_prefix(text: str, secret: str) -> int:
    """Length of the longest start of ``secret`` that ``text`` ends with (0: none long
    enough to matter). Runs per attempt and secret: a few ``find`` calls, no slicing loop."""
    window = text[-(len(secret) - 1) :] if len(secret) > MIN_SECRET_CHARS else ""
    head = secret[:MIN_SECRET_CHARS]
    at = window.find(head)
    while at != -1:  # the first hit is the longest candidate
        if secret.startswith(window[at:]):
            return len(window) - at
        at = window.find(head, at + 1)
    return 0
