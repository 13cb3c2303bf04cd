"""The one outbound sender, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from loadbell.delivery.retry import RetryPolicy
from loadbell.delivery.sender import EXCERPT_BYTES, Sender, parse_retry_after
from loadbell.security.masking import MASK
from loadbell.testing import Received, RecordingReceiver
from loadbell.values import OutboundRequest, Verdict

BODY = b'{"event": "test.notification_channel"}'


def _request(url: str, **headers: str) -> OutboundRequest:
    return OutboundRequest(
        url=url,
        body=BODY,
        headers={"Content-Type": "application/json", **headers},
        secret_headers=frozenset({"X-Token"}),
    )


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    async with Sender(allow_private_targets=True) as s:
        yield s


@pytest.fixture
async def guarded() -> AsyncIterator[Sender]:
    """A sender with the SSRF guard on, as `loadbell serve` runs by default."""
    async with Sender(allow_private_targets=False) as s:
        yield s


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),  # plain success
        (201, Verdict.DELIVERED),  # any 2xx
        (202, Verdict.DELIVERED),  # Teams Workflows answers 202
        (204, Verdict.DELIVERED),  # HipChat/Discord answer 204
        (500, Verdict.RETRY),  # server error
        (502, Verdict.RETRY),  # bad gateway
        (503, Verdict.RETRY),
        (408, Verdict.RETRY),  # request timeout
        (429, Verdict.RETRY),  # rate limited
        (400, Verdict.FAILED),  # other 4xx are final
        (401, Verdict.FAILED),
        (404, Verdict.FAILED),  # Discord: a 404 webhook must not be retried
        (410, Verdict.FAILED),
        (422, Verdict.FAILED),
    ],
)
async def test_status_to_verdict(status: int, verdict: Verdict, sender: Sender) -> None:
    """The response status decides: 2xx delivered; 408, 429 and 5xx retry; other 4xx fail."""
    async with RecordingReceiver(status=status) as rx:
        outcome = await sender.send(_request(f"{rx.url}/hook"), timeout=5)
        assert len(rx.requests) == 1
        assert rx.requests[0].body == BODY
    assert outcome.verdict is verdict
    assert outcome.status_code == status
    assert outcome.duration_ms > 0
    if verdict is Verdict.DELIVERED:
        assert outcome.error is None
    else:
        assert outcome.error is not None and str(status) in outcome.error


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("3", 3.0, 3.0),  # delay-seconds
        ("0", 0.0, 0.0),
        ("30", 30.0, 30.0),  # parsed as given; the policy applies the cap
    ],
)
async def test_retry_after_seconds(header: str, low: float, high: float, sender: Sender) -> None:
    """A 429's Retry-After in seconds is reported on the outcome."""

    def answer(_: Received) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": header})

    async with RecordingReceiver(handler=answer) as rx:
        outcome = await sender.send(_request(rx.url), timeout=5)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after is not None
    assert low <= outcome.retry_after <= high


async def test_retry_after_http_date(sender: Sender) -> None:
    """A 429's Retry-After as an HTTP-date becomes the seconds until that date."""
    when = email.utils.formatdate(time.time() + 6, usegmt=True)

    def answer(_: Received) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": when})

    async with RecordingReceiver(handler=answer) as rx:
        outcome = await sender.send(_request(rx.url), timeout=5)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after is not None
    assert 4.0 <= outcome.retry_after <= 6.0


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("2", 2.0),  # honoured as given
        ("600", 10.0),  # capped at max_delay
        (None, 1.0),  # absent: the policy's own backoff
        ("soon", 1.0),  # unparseable: ignored
    ],
)
async def test_retry_after_is_honoured_within_the_cap(
    header: str | None, wait: float, sender: Sender
) -> None:
    """The wait after a 429 is its Retry-After, never beyond the policy's 10 s cap."""

    def answer(_: Received) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": header} if header else {})

    async with RecordingReceiver(handler=answer) as rx:
        outcome = await sender.send(_request(rx.url), timeout=5)
    assert RetryPolicy().delay(1, outcome.retry_after) == wait


def test_retry_after_past_date_means_now() -> None:
    """An HTTP-date in the past asks for no wait at all."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_retry_after_ignored_on_final_failures(sender: Sender) -> None:
    """A Retry-After on a non-retryable status does not turn it into a retry."""

    def answer(_: Received) -> web.Response:
        return web.Response(status=400, headers={"Retry-After": "1"})

    async with RecordingReceiver(handler=answer) as rx:
        outcome = await sender.send(_request(rx.url), timeout=5)
    assert outcome.verdict is Verdict.FAILED
    assert outcome.retry_after is None


async def test_timeout_waiting_for_response_retries(sender: Sender) -> None:
    """A receiver slower than the timeout gives a retry with a message naming the timeout."""
    async with RecordingReceiver(delay=1.0) as rx:
        started = time.perf_counter()
        outcome = await sender.send(_request(rx.url), timeout=0.3)
        elapsed = time.perf_counter() - started
    assert outcome.verdict is Verdict.RETRY
    assert outcome.status_code is None
    assert outcome.error == "timed out after 0.3 s (connect, response and body)"
    assert elapsed < 1.5


async def test_timeout_covers_the_body(sender: Sender) -> None:
    """Headers that arrive in time do not help when the body trickles past the timeout."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b"partial")
        await asyncio.sleep(2.0)
        await response.write(b"rest")
        return response

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        outcome = await sender.send(_request(f"http://127.0.0.1:{port}/"), timeout=0.4)
    finally:
        await runner.cleanup()
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error is not None and "timed out" in outcome.error


async def test_connection_refused_retries(sender: Sender) -> None:
    """A closed port is a connection error, which is retried."""
    async with RecordingReceiver() as rx:
        url = rx.url
    outcome = await sender.send(_request(url), timeout=2)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error is not None and outcome.error.startswith("connection error")


async def test_redirect_is_not_followed(sender: Sender) -> None:
    """A 3xx is a failure reported with its Location, and the target is never contacted."""
    async with RecordingReceiver() as elsewhere:

        def redirect(_: Received) -> web.Response:
            return web.Response(status=302, headers={"Location": f"{elsewhere.url}/stolen"})

        async with RecordingReceiver(handler=redirect) as rx:
            outcome = await sender.send(_request(f"{rx.url}/hook"), timeout=5)
            assert len(rx.requests) == 1
        await asyncio.sleep(0.1)
        assert elsewhere.requests == []
    assert outcome.verdict is Verdict.FAILED
    assert outcome.status_code == 302
    assert outcome.error is not None
    assert "redirects are not followed" in outcome.error
    assert f"{elsewhere.url}/stolen" in outcome.error


async def test_response_excerpt_is_truncated_to_4_kib(sender: Sender) -> None:
    """Only the first 4 KiB of a response body is kept for the attempt log."""
    big = "x" * 3000 + "y" * 20_000
    async with RecordingReceiver(status=500, body=big) as rx:
        outcome = await sender.send(_request(rx.url), timeout=5)
    assert EXCERPT_BYTES == 4096
    assert outcome.body_excerpt == big[:4096]


async def test_short_response_is_kept_whole(sender: Sender) -> None:
    """A response shorter than 4 KiB is logged as received."""
    async with RecordingReceiver(status=200, body="ok thanks") as rx:
        outcome = await sender.send(_request(rx.url), timeout=5)
    assert outcome.body_excerpt == "ok thanks"


async def test_secret_headers_are_masked_in_the_log_only(sender: Sender) -> None:
    """The receiver gets the real values; the logged headers and URL hide the secrets."""
    async with RecordingReceiver() as rx:
        request = _request(
            f"{rx.url}/hooks/T000/B000/XXXX?token=abc",
            **{"X-Token": "s3cret", "Authorization": "Bearer t0ken", "X-Plain": "visible"},
        )
        outcome = await sender.send(request, timeout=5)
        got = rx.requests[0]
    assert got.header("X-Token") == "s3cret"
    assert got.header("Authorization") == "Bearer t0ken"
    assert got.path == "/hooks/T000/B000/XXXX?token=abc"
    assert outcome.request_headers["X-Token"] == MASK
    assert outcome.request_headers["Authorization"] == MASK
    assert outcome.request_headers["X-Plain"] == "visible"
    assert outcome.request_url == f"{rx.url}/{MASK}"
    assert "s3cret" not in repr(outcome) and "t0ken" not in repr(outcome)
    assert "XXXX" not in repr(outcome)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # loopback literal
        "[::1]",  # IPv6 loopback
        "169.254.169.254",  # cloud metadata (link-local)
        "10.1.2.3",  # private
        "192.168.0.10",  # private
        "0.0.0.0",  # unspecified
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
    ],
)
async def test_guard_refuses_private_literals(host: str, guarded: Sender) -> None:
    """Non-public IP literals are refused before connecting, and the message names the flag."""
    started = time.perf_counter()
    outcome = await guarded.send(_request(f"http://{host}:9/hook"), timeout=5)
    assert time.perf_counter() - started < 1.0
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error is not None
    assert "--allow-private-targets" in outcome.error
    assert "LOADBELL_ALLOW_PRIVATE_TARGETS=1" in outcome.error


async def test_guard_refuses_a_live_loopback_receiver(guarded: Sender) -> None:
    """A real receiver on 127.0.0.1 gets nothing when private targets are not allowed."""
    async with RecordingReceiver() as rx:
        outcome = await guarded.send(_request(f"{rx.url}/hook"), timeout=5)
        await asyncio.sleep(0.05)
        assert rx.requests == []
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error is not None and "--allow-private-targets" in outcome.error


@pytest.mark.parametrize(
    "host",
    [
        "localhost",  # a name: only the resolver knows it is loopback
        "0x7f.0.0.1",  # not an IP literal to us; getaddrinfo turns it into 127.0.0.1
    ],
)
async def test_guard_checks_names_at_connect_time(host: str, guarded: Sender) -> None:
    """A host name is resolved when connecting and refused for its loopback address."""
    async with RecordingReceiver() as rx:
        outcome = await guarded.send(_request(f"http://{host}:{rx.port}/hook"), timeout=5)
        await asyncio.sleep(0.05)
        assert rx.requests == []
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error is not None
    assert f"target {host} resolves to 127.0.0.1" in outcome.error or host == "localhost"
    assert host in outcome.error
    assert "--allow-private-targets" in outcome.error


async def test_allow_private_targets_lets_localhost_through(sender: Sender) -> None:
    """With the flag on, the same `localhost` URL is delivered."""
    async with RecordingReceiver() as rx:
        outcome = await sender.send(_request(f"http://localhost:{rx.port}/hook"), timeout=5)
    assert outcome.verdict is Verdict.DELIVERED


async def test_an_unparsable_url_is_a_final_failure_not_an_error() -> None:
    async with Sender(allow_private_targets=True) as sender:
        outcome = await sender.send(OutboundRequest(url="http://[::1/x", body=b"{}", headers={}), 5)
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error is not None and "invalid URL" in outcome.error
