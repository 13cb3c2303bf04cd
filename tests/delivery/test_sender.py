"""The one outbound sender, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web

from loadbell.delivery.sender import EXCERPT_BYTES, Sender
from loadbell.domain.retry import RetryPolicy
from loadbell.security.masking import MASK
from loadbell.testing import Received, RecordingReceiver
from loadbell.values import OutboundRequest, Outcome, Verdict, parse_retry_after

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


# Hanging receivers, for the rule that an attempt ends within 0.5 s after its timeout.
TIMEOUT = 1.0  # seconds: long enough that the 0.5 s bound means something
LATE = 0.5  # how far past its timeout an attempt may end, whatever the receiver does
TIMED_OUT = f"timed out after {TIMEOUT:g} s (connect, response and body)"

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def _silent(writer: asyncio.StreamWriter) -> None:
    """Accept the request and never answer."""


def _trickle(head: bytes, first: bytes = b"") -> Script:
    """Send ``head`` and ``first`` at once, then one more byte every 50 ms, for ever."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(head + first)
        while True:
            await asyncio.sleep(0.05)
            writer.write(b".")

    return answer


def _break_off(head: bytes, first: bytes) -> Script:
    """Send ``head`` and the start of a longer body, then close the connection."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(head + first)
        await writer.drain()
        writer.close()

    return answer


async def _no_content(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")


class RawReceiver:
    """A receiver on 127.0.0.1 that answers the n-th connection with the n-th script (the
    last one for every later connection) in raw bytes: the shapes aiohttp's own server
    will not take, such as a head that never ends or a body that never does."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self.connections = 0
        self.closed_by_client = 0
        self._closing = asyncio.Event()  # set each time the client closes a connection
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def __aenter__(self) -> RawReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_closed_by_client(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                self._closing.clear()
                if self.closed_by_client >= count:
                    return
                await self._closing.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        answering: asyncio.Task[None] | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            await reader.readexactly(length)
            answering = asyncio.create_task(script(writer))
            # Whatever the script does, this connection ends when the client closes it.
            await reader.read()
            self._client_closed()
        except ConnectionError:
            self._client_closed()
        finally:
            if answering is not None:
                answering.cancel()
            writer.close()
            self._handlers.discard(handler)

    def _client_closed(self) -> None:
        self.closed_by_client += 1
        self._closing.set()


@contextlib.contextmanager
def _never_accepting() -> Iterator[str]:
    """A port whose listener never accepts and whose queue is full, so connecting hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        # Linux queues backlog + 1 connections, then drops further SYNs: connect() hangs.
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            yield f"http://127.0.0.1:{port}/hook"


@contextlib.asynccontextmanager
async def _hanging(shape: str) -> AsyncIterator[str]:
    if shape == "never accepts":
        with _never_accepting() as url:
            yield url
        return
    script = {
        "never answers": _silent,
        # the status line in time, then a header that never ends
        "trickles its head": _trickle(b"HTTP/1.1 200 OK\r\nX-Slow: "),
    }[shape]
    async with RawReceiver(script) as rx:
        yield rx.url


async def _timed_send(sender: Sender, url: str, timeout: float = TIMEOUT) -> tuple[Outcome, float]:
    started = time.perf_counter()
    outcome = await sender.send(_request(url), timeout=timeout)
    return outcome, time.perf_counter() - started


@pytest.mark.parametrize("shape", ["never accepts", "never answers", "trickles its head"])
async def test_no_response_head_in_time_is_a_timeout_ending_on_time(
    shape: str, sender: Sender
) -> None:
    """Without a status line and headers by the deadline, the attempt is a retry ending then."""
    async with _hanging(shape) as url:
        outcome, elapsed = await _timed_send(sender, url)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.status_code is None
    assert outcome.error == TIMED_OUT
    assert TIMEOUT - 0.05 <= elapsed <= TIMEOUT + LATE


@pytest.mark.parametrize("shape", ["never accepts", "never answers"])
async def test_many_attempts_at_once_each_end_on_time(shape: str, sender: Sender) -> None:
    """Fifty attempts at once to one hanging receiver each end within 0.5 s of the timeout."""
    async with _hanging(shape) as url:
        results = await asyncio.gather(*(_timed_send(sender, url) for _ in range(50)))
    assert {outcome.error for outcome, _ in results} == {TIMED_OUT}
    slowest = max(elapsed for _, elapsed in results)
    assert TIMEOUT - 0.05 <= slowest <= TIMEOUT + LATE


@pytest.mark.slow
async def test_a_long_timeout_is_not_rounded_up_to_a_whole_second(sender: Sender) -> None:
    """A timeout of 5 s or more ends at its deadline, not at the next whole second after it."""
    async with _hanging("never answers") as url:
        # aiohttp's own total timeout rounded deadlines of 5 s or more up to the next whole
        # second of the loop clock: a deadline 0.05 s past one would have run 0.95 s late.
        timeout = 5 + (0.05 - asyncio.get_running_loop().time()) % 1
        outcome, elapsed = await _timed_send(sender, url, timeout)
    assert outcome.error == f"timed out after {timeout:g} s (connect, response and body)"
    assert timeout - 0.05 <= elapsed <= timeout + LATE


def _head(status: str, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, "Content-Length: 100000", "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize(
    ("head", "first", "verdict", "error"),
    [
        # the receiver took the delivery, then trickled its body: delivered, sent once
        (_head("200 OK"), b"partial", Verdict.DELIVERED, None),
        # the excerpt was full in time; only the drain after it was cut
        (_head("200 OK"), b"x" * 5000, Verdict.DELIVERED, None),
        # a status that asks for a retry still does, with the start of the body as the reason
        (
            _head("503 Service Unavailable"),
            b"busy",
            Verdict.RETRY,
            "HTTP 503 Service Unavailable: busy",
        ),
        (_head("429 Too Many Requests", "Retry-After: 3"), b"", Verdict.RETRY, "HTTP 429"),
        # a final status stays final
        (_head("404 Not Found"), b"gone", Verdict.FAILED, "HTTP 404 Not Found: gone"),
    ],
    ids=["200", "200-long-body", "503", "429", "404"],
)
async def test_a_head_in_time_decides_even_when_the_body_trickles(
    head: bytes, first: bytes, verdict: Verdict, error: str | None, sender: Sender
) -> None:
    """A status that arrived in time gives its verdict, with the excerpt that arrived by the
    deadline, and the attempt ends on time."""
    async with RawReceiver(_trickle(head, first)) as rx:
        outcome, elapsed = await _timed_send(sender, rx.url)
    assert outcome.verdict is verdict
    assert outcome.status_code == int(head.split()[1])
    excerpt = outcome.body_excerpt or ""
    kept = first[:EXCERPT_BYTES].decode()
    assert excerpt.startswith(kept) and set(excerpt[len(kept) :]) <= {"."}
    assert len(excerpt) <= EXCERPT_BYTES
    if error is None:
        assert outcome.error is None
    else:
        assert outcome.error is not None and outcome.error.startswith(error)
    assert outcome.retry_after == (3.0 if b"Retry-After" in head else None)
    assert TIMEOUT - 0.05 <= elapsed <= TIMEOUT + LATE


async def test_a_cut_off_connection_is_closed_not_reused(sender: Sender) -> None:
    """The connection of a body cut at the deadline is closed; the next attempt opens its own."""
    async with RawReceiver(_trickle(_head("200 OK"), b"partial"), _no_content) as rx:
        first, _ = await _timed_send(sender, rx.url)
        assert first.verdict is Verdict.DELIVERED
        await rx.wait_closed_by_client(1)
        # A reused connection would still carry the trickle: this attempt would time out.
        second, _ = await _timed_send(sender, rx.url)
    assert second.verdict is Verdict.DELIVERED and second.status_code == 204
    assert rx.connections == 2


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        ("200 OK", Verdict.DELIVERED),  # the receiver had accepted it before the break
        ("502 Bad Gateway", Verdict.RETRY),
    ],
)
async def test_a_body_that_breaks_off_keeps_the_status_verdict(
    status: str, verdict: Verdict, sender: Sender
) -> None:
    """A connection that drops during the body leaves the status's verdict and what came."""
    async with RawReceiver(_break_off(_head(status), b"partial")) as rx:
        outcome, _ = await _timed_send(sender, rx.url)
    assert outcome.verdict is verdict
    assert outcome.status_code == int(status.split()[0])
    assert outcome.body_excerpt == "partial"


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
