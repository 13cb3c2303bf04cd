"""The Apprise kind: any Apprise URL, run in a thread, logged like every delivery."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import free_port
from loadbell.channels.apprise import AppriseKind, content, logged_url
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.services.channel_config import masked
from loadbell.testing import RecordingReceiver
from loadbell.values import ConfigError, Outcome, Verdict


def _config(url: str) -> dict[str, Any]:
    return AppriseKind().validate({"url": url})


async def test_json_url_posts_to_the_receiver(receiver: RecordingReceiver) -> None:
    """A json:// URL makes Apprise POST title, message and type to the receiver."""
    outcome = await AppriseKind().send(
        samples.sample_message(EventType.TEST_FINISHED),
        _config(f"json://127.0.0.1:{receiver.port}/notify/token"),
        timeout=5,
    )
    assert outcome.verdict is Verdict.DELIVERED, outcome
    assert outcome.request_url == f"json://127.0.0.1:{receiver.port}/****"
    (got,) = receiver.requests
    assert got.method == "POST" and got.path == "/notify/token"
    body = got.json()
    assert body["title"] == "Load test failed"
    assert body["type"] == "failure"
    assert body["message"].startswith("Load test failed: checkout-flow in Web shop")
    assert "View the run: http://localhost:8000/runs/4217" in body["message"]


async def test_receiver_error_is_retried_with_apprise_words() -> None:
    """A 500 from the service is a retry; Apprise's warning is the attempt's error."""
    async with RecordingReceiver(status=500) as rx:
        outcome = await AppriseKind().send(
            samples.sample_message(EventType.TEST_STARTED),
            _config(f"json://127.0.0.1:{rx.port}/"),
            timeout=5,
        )
    assert outcome.verdict is Verdict.RETRY
    assert "500" in (outcome.error or ""), outcome
    assert outcome.body_excerpt and "WARNING" in outcome.body_excerpt


async def test_unreachable_service_is_retried() -> None:
    """A closed port is retried, like a connection error of the HTTP sender."""
    outcome = await AppriseKind().send(
        samples.sample_message(EventType.TEST_STARTED),
        _config(f"json://127.0.0.1:{free_port()}/"),
        timeout=5,
    )
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error and "Apprise failed" in outcome.error


async def test_send_does_not_block_the_event_loop() -> None:
    """While Apprise waits on a slow service, the event loop keeps running."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async with RecordingReceiver(delay=0.5) as rx:
        ticker = asyncio.create_task(tick())
        outcome = await AppriseKind().send(
            samples.sample_message(EventType.TEST_STARTED),
            _config(f"json://127.0.0.1:{rx.port}/"),
            timeout=5,
        )
        ticker.cancel()
    assert outcome.verdict is Verdict.DELIVERED
    assert ticks > 10


TIMEOUT = 1.0  # seconds: long enough that the 0.5 s bound means something
LATE = 0.5  # how far past its timeout an attempt may end, whatever the service does


@contextlib.asynccontextmanager
async def _never_answering() -> AsyncIterator[int]:
    """A receiver on 127.0.0.1 that takes every connection and never answers."""
    held: set[asyncio.Task[None]] = set()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        held.add(task)
        try:
            await reader.read()  # until the client hangs up
        except ConnectionError:
            pass
        finally:
            writer.close()
            held.discard(task)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        # Closing the held connections also ends Apprise's abandoned service threads.
        server.close()
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        await server.wait_closed()


async def _timed_send(port: int) -> tuple[Outcome, float]:
    started = time.perf_counter()
    outcome = await AppriseKind().send(
        samples.sample_message(EventType.TEST_STARTED),
        _config(f"json://127.0.0.1:{port}/"),
        timeout=TIMEOUT,
    )
    return outcome, time.perf_counter() - started


async def test_a_silent_service_is_retried_when_the_timeout_ends() -> None:
    """A service that never answers gives a retry within 0.5 s after the timeout."""
    async with _never_answering() as port:
        # Apprise loads its plugins on first use, within the attempt's timeout: done here so
        # that the attempt still has time to print its URL on a slow machine.
        shown = await asyncio.to_thread(logged_url, f"json://127.0.0.1:{port}/")
        outcome, elapsed = await _timed_send(port)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error is not None and outcome.error.startswith("Apprise")
    assert "timed out" in outcome.error or "did not finish" in outcome.error
    assert outcome.request_url == shown
    assert elapsed <= TIMEOUT + LATE


async def test_many_attempts_at_once_each_end_on_time() -> None:
    """Forty attempts at once to a silent service, more than a thread pool has workers (at
    most 32 by default), each end within 0.5 s after the timeout."""
    async with _never_answering() as port:
        results = await asyncio.gather(*(_timed_send(port) for _ in range(40)))
    assert {outcome.verdict for outcome, _ in results} == {Verdict.RETRY}
    assert max(elapsed for _, elapsed in results) <= TIMEOUT + LATE


@pytest.mark.parametrize(
    ("event", "notify_type"),
    [
        (EventType.TEST_STARTED, "info"),
        (EventType.TEST_FINISHED, "failure"),  # the sample run finished failed
        (EventType.TEST_THRESHOLD_FAILED, "warning"),
        (EventType.PROJECT_CREATED, "info"),
        (EventType.TEST_NOTIFICATION_CHANNEL, "info"),
    ],
)
def test_severity_becomes_the_notify_type(event: EventType, notify_type: str) -> None:
    """Apprise's notify type follows the event's severity (it colours many services)."""
    title, body, kind = content(samples.sample_message(event))
    assert title and body
    assert kind.value == notify_type


@pytest.mark.parametrize("event", list(EventType), ids=lambda e: e.value)
def test_every_event_has_content(event: EventType) -> None:
    """Every event of the catalog gives Apprise a title and a body."""
    preview = AppriseKind().preview(samples.sample_message(event), _config("json://127.0.0.1/"))
    assert b'"title":"' in preview.body and b'"body":"' in preview.body


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("json://127.0.0.1:8000/path/secret", "secret"),  # path hidden like webhook URLs
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12315544/", "AAHdq"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "JHMHI8"),
    ],
)
def test_logged_url_hides_tokens(url: str, hidden: str) -> None:
    """The attempt log's URL keeps the service recognisable and its tokens out."""
    shown = logged_url(url)
    assert shown.split("://")[0] == url.split("://")[0]
    assert hidden not in shown


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "config.url"),
        ({"url": ""}, "config.url"),
        ({"url": "nonsense://x"}, "config.url"),  # no such Apprise service
        ({"url": "json://127.0.0.1/", "tag": "x"}, "config.tag"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, Any], field: str) -> None:
    """Unknown services, empty URLs and unknown keys are refused."""
    with pytest.raises(ConfigError) as info:
        AppriseKind().validate(config)
    assert info.value.field == field


async def test_end_to_end_through_the_server(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Through the API: the test hook reaches the service, the attempt log has the masked
    URL, and the channel's URL is masked in responses."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "apprise",
            "name": "apprise",
            "config": {"url": f"json://127.0.0.1:{receiver.port}/apprise/token"},
        },
    )
    assert r.status_code == 201, r.text
    channel = r.json()
    assert "token" not in channel["config"]["url"]
    r = await api.post(f"/channels/{channel['id']}/test")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.json()
    (got,) = receiver.requests
    assert got.json()["title"] == "Test notification from loadbell"
    deliveries = (await api.get("/deliveries", params={"channel_id": channel["id"]})).json()
    detail = (await api.get(f"/deliveries/{deliveries['items'][0]['id']}")).json()
    assert f"json://127.0.0.1:{receiver.port}/****" in str(detail)
    assert "token" not in str(detail)


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("pover://userkey@apptoken", "apptoken"),
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12315544/", "AAHdq"),
    ],
)
def test_api_responses_hide_apprise_tokens(url: str, token: str) -> None:
    """GET /channels shows an Apprise URL without its tokens."""
    assert token not in masked(AppriseKind(), {"url": url})["url"]
