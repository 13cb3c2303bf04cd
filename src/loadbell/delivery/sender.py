"""The one outbound HTTP sender. Every channel's request goes through ``Sender.send``.

It owns the timeout, the SSRF guard, the no-redirect rule, response truncation and the
status -> verdict mapping, and returns a typed :class:`Outcome`; it never raises for a
failed delivery.

An attempt has one deadline, ``timeout`` seconds after ``send`` starts, over everything it
waits for: DNS through the guard, connecting, sending, the response head and the body. The
status decides as soon as the head (status line and headers) is in: a body still arriving
at the deadline is cut there, with the excerpt that arrived, and the verdict stays the
status's; its connection is closed rather than reused. Only an attempt with no response
head by the deadline is a timeout.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import aiohttp
from yarl import URL

from loadbell.delivery.deadlines import Deadlines
from loadbell.delivery.exchange import logged_body, logged_headers
from loadbell.delivery.guard import GuardedResolver, find_forbidden, refuse_message
from loadbell.security.addresses import is_forbidden, literal_ip
from loadbell.security.masking import mask_headers, mask_url
from loadbell.values import OutboundRequest, Outcome, Verdict, parse_retry_after

# Every attempt logs its masked URL, and a channel sends to the same few URLs over and over:
# urlsplit on each one was a measurable share of the worker's CPU per delivery.
_masked_url = functools.lru_cache(maxsize=1024)(mask_url)

# Parsed once per target URL rather than by aiohttp on every request; the same kind of
# cache as _masked_url (a channel sends to the same few URLs over and over).
_parsed_url = functools.lru_cache(maxsize=1024)(URL)

# The attempt's deadline is one around the whole attempt (deadlines.py), so aiohttp gets
# none of its own. Its ClientTimeout(total=...) rounds a timeout of 5 s or more up to the
# next whole second of the loop clock (ceil_threshold), so a 10 s attempt ran up to 11 s,
# and it covers the body, so a 2xx with a slow body read as "no answer".
_NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout()

EXCERPT_BYTES = 4096  # what the attempt log keeps of a response body
_DRAIN_LIMIT = 65_536  # read and drop up to this much more so the connection can be reused

RETRYABLE_STATUS = frozenset({408, 429})


def classify(status: int) -> Verdict:
    """2xx succeeds; timeouts-as-status (408), 429 and 5xx are retried; other codes are final.

    3xx counts as a failure: redirects are never followed (a redirect to an internal
    address would walk around the SSRF guard).
    """
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in RETRYABLE_STATUS or status >= 500:
        return Verdict.RETRY
    return Verdict.FAILED


class Sender:
    def __init__(self, *, allow_private_targets: bool = False) -> None:
        self.allow_private_targets = allow_private_targets
        self._session: aiohttp.ClientSession | None = None
        self._deadlines = Deadlines()
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's

    async def start(self) -> None:
        if self._session is not None:
            return
        self._loop = asyncio.get_running_loop()
        resolver = None if self.allow_private_targets else GuardedResolver()
        connector = aiohttp.TCPConnector(
            limit=0,  # the worker caps concurrency itself
            ttl_dns_cache=10,
            resolver=resolver,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=_NO_AIOHTTP_TIMEOUT,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Sender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, request: OutboundRequest, timeout: float) -> Outcome:
        if self._session is None:
            await self.start()
        assert self._session is not None and self._loop is not None
        base = logged_request(request)
        started = time.perf_counter()

        if not self.allow_private_targets:
            refusal = self._refuse_literal(request.url)
            if refusal:
                return Outcome(Verdict.FAILED, error=refusal, **base)
        try:
            url: URL | str = _parsed_url(request.url)
        except ValueError:
            url = request.url  # aiohttp reports it as an invalid URL, below
        response: aiohttp.ClientResponse | None = None
        excerpt: list[bytes] = []  # filled as the body arrives, so a cut-off keeps its start
        try:
            with self._deadlines.within(timeout, self._loop):
                response = await self._session.request(
                    request.method,
                    url,
                    data=request.body,
                    headers=request.headers,
                    allow_redirects=False,
                )
                await _read_body(response.content, excerpt)
        except TimeoutError:
            if response is None:
                return Outcome(
                    Verdict.RETRY,
                    error=f"timed out after {timeout:g} s (connect, response and body)",
                    duration_ms=(time.perf_counter() - started) * 1000,
                    **base,
                )
            # The head came in time, the body did not: the status still decides, below.
        except (aiohttp.ClientError, OSError) as exc:
            if response is None:
                return _unanswered(exc, started, base)
            # The body broke off after the head: the status still decides, below.
        finally:
            if response is not None:
                if response.content.at_eof():
                    response.release()
                else:
                    # Unread bytes of a cut-off body would be taken for the next response.
                    response.close()
        return _answered(response, excerpt, started, base)

    def _refuse_literal(self, url: str) -> str | None:
        if self.allow_private_targets:
            return None
        try:
            host = URL(url).host or ""
        except ValueError:
            return None
        address = literal_ip(host)
        if address is not None and is_forbidden(address):
            return refuse_message(host, address)
        return None


def logged_request(request: OutboundRequest) -> dict[str, Any]:
    """What the attempt log keeps of the request, as :class:`Outcome` fields: the URL and
    headers masked, the body as ``exchange.logged_body`` keeps it."""
    body, body_bytes = logged_body(request.body)
    return {
        "request_url": _masked_url(request.url) if request.mask_url else request.url,
        "request_headers": mask_headers(request.headers, request.secret_headers),
        "request_body": body,
        "request_body_bytes": body_bytes,
    }


def _answered(
    response: aiohttp.ClientResponse, body: list[bytes], started: float, base: dict[str, Any]
) -> Outcome:
    excerpt = b"".join(body).decode("utf-8", errors="replace")
    status = response.status
    base = {**base, "response_headers": logged_headers(response.headers.items())}
    verdict = classify(status)
    if verdict is Verdict.DELIVERED:
        return Outcome(
            verdict,
            status_code=status,
            body_excerpt=excerpt,
            duration_ms=(time.perf_counter() - started) * 1000,
            **base,
        )
    retry_after = (
        parse_retry_after(response.headers.get("Retry-After")) if verdict is Verdict.RETRY else None
    )
    return Outcome(
        verdict,
        status_code=status,
        body_excerpt=excerpt,
        error=_status_error(response, excerpt),
        retry_after=retry_after,
        duration_ms=(time.perf_counter() - started) * 1000,
        **base,
    )


def _unanswered(
    exc: aiohttp.ClientError | OSError, started: float, base: dict[str, Any]
) -> Outcome:
    forbidden = find_forbidden(exc)
    if forbidden is not None:
        return Outcome(
            Verdict.FAILED,
            error=str(forbidden),
            duration_ms=(time.perf_counter() - started) * 1000,
            **base,
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return Outcome(Verdict.FAILED, error=f"invalid URL: {exc}", **base)
    return Outcome(
        Verdict.RETRY,
        error=f"connection error: {exc.__class__.__name__}: {exc}",
        duration_ms=(time.perf_counter() - started) * 1000,
        **base,
    )


def _status_error(resp: aiohttp.ClientResponse, excerpt: str) -> str:
    detail = f": {excerpt.strip()[:200]}" if excerpt.strip() else ""
    if 300 <= resp.status < 400:
        location = resp.headers.get("Location", "?")
        return f"HTTP {resp.status} redirect to {location} (redirects are not followed)"
    return f"HTTP {resp.status} {resp.reason or ''}".rstrip() + detail


async def _read_body(content: aiohttp.StreamReader, excerpt: list[bytes]) -> None:
    """Append the body's first EXCERPT_BYTES to ``excerpt`` as they arrive, then read and
    drop up to _DRAIN_LIMIT more so that a fully read connection goes back to the pool."""
    size = 0
    while size < EXCERPT_BYTES:
        chunk = await content.read(EXCERPT_BYTES - size)
        if not chunk:
            return
        excerpt.append(chunk)
        size += len(chunk)
    drained = 0
    while drained < _DRAIN_LIMIT:
        chunk = await content.read(16_384)
        if not chunk:
            return
        drained += len(chunk)
