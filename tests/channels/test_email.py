"""The email kind against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from conftest import free_port
from loadbell.channels.email import EmailKind
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.values import ConfigError, Verdict


@dataclass
class MailRecorder:
    """An aiosmtpd handler that keeps every accepted message; replies can be scripted."""

    rcpt_reply: str | None = None  # for recipients starting with "bad"
    data_reply: str | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[list[str]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_reply and address.startswith("bad"):
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    recorder: MailRecorder
    port: int

    def config(self, **extra: Any) -> dict[str, Any]:
        return EmailKind().validate(
            {
                "to": ["ops@example.com"],
                "from": "loadbell <alerts@example.com>",
                "smtp_host": "127.0.0.1",
                "smtp_port": self.port,
                "starttls": False,
                **extra,
            }
        )


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"bot", b"right")
    return AuthResult(success=ok, handled=False)


def _serve(recorder: MailRecorder, **options: Any) -> Iterator[SmtpServer]:
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer(recorder, port)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from _serve(MailRecorder())


@pytest.fixture
def smtp_with_auth() -> Iterator[SmtpServer]:
    yield from _serve(MailRecorder(), authenticator=_authenticate, auth_require_tls=False)


async def test_message_is_html_plus_text(smtp: SmtpServer) -> None:
    """A finished run goes out as multipart/alternative with the summary in both parts."""
    message = samples.sample_message(EventType.TEST_FINISHED)
    outcome = await EmailKind().send(message, smtp.config(), timeout=5)
    assert outcome.verdict is Verdict.DELIVERED, outcome.error
    assert outcome.status_code == 250
    assert outcome.request_url == f"smtp://127.0.0.1:{smtp.port}"
    assert outcome.request_headers["To"] == "ops@example.com"
    (mail,) = smtp.recorder.messages
    assert mail["Subject"].startswith("Load test failed: checkout-flow in Web shop")
    assert mail["Message-ID"] == f"<{message.delivery_id}@loadbell>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert "FAILED  http_req_duration: p(95)<500" in text.get_content()
    assert "View the run: http://localhost:8000/runs/4217" in text.get_content()
    assert 'href="http://localhost:8000/runs/4217"' in html.get_content()
    assert smtp.recorder.envelopes == [["ops@example.com"]]


async def test_login_with_username_and_password(smtp_with_auth: SmtpServer) -> None:
    """smtp_username/smtp_password log in; a wrong password fails for good, with a hint."""
    message = samples.sample_message(EventType.TEST_STARTED)
    good = smtp_with_auth.config(smtp_username="bot", smtp_password="right")
    outcome = await EmailKind().send(message, good, timeout=5)
    assert outcome.verdict is Verdict.DELIVERED, outcome.error
    bad = smtp_with_auth.config(smtp_username="bot", smtp_password="wrong")
    outcome = await EmailKind().send(message, bad, timeout=5)
    assert outcome.verdict is Verdict.FAILED
    assert outcome.status_code == 535
    assert "config.smtp_password" in (outcome.error or "")


@pytest.mark.parametrize(
    ("rcpt", "data", "verdict", "code"),
    [
        ("450 4.2.1 Mailbox busy", None, Verdict.RETRY, 450),  # temporary: retried
        ("550 5.1.1 No such user", None, Verdict.FAILED, 550),  # permanent: failed
        (None, "451 4.3.0 Try again later", Verdict.RETRY, 451),
        (None, "554 5.7.1 Rejected as spam", Verdict.FAILED, 554),
    ],
)
async def test_smtp_replies_map_to_verdicts(
    smtp: SmtpServer, rcpt: str | None, data: str | None, verdict: Verdict, code: int
) -> None:
    """4xx replies are retried and 5xx replies fail, with the code in the attempt log."""
    smtp.recorder.rcpt_reply, smtp.recorder.data_reply = rcpt, data
    config = smtp.config(to=["bad@example.com"])
    outcome = await EmailKind().send(
        samples.sample_message(EventType.TEST_FINISHED), config, timeout=5
    )
    assert outcome.verdict is verdict, outcome.error
    assert outcome.status_code == code
    assert str(code) in (outcome.error or "")


async def test_some_recipients_refused_still_delivers(smtp: SmtpServer) -> None:
    """When one recipient of two is refused, the mail is delivered and the refusal noted."""
    smtp.recorder.rcpt_reply = "550 5.1.1 No such user"
    config = smtp.config(to=["ops@example.com", "bad@example.com"])
    outcome = await EmailKind().send(
        samples.sample_message(EventType.TEST_FINISHED), config, timeout=5
    )
    assert outcome.verdict is Verdict.DELIVERED
    assert "bad@example.com: 550" in (outcome.body_excerpt or "")
    assert smtp.recorder.envelopes == [["ops@example.com"]]


async def test_unreachable_server_is_retried() -> None:
    """A closed port is a connection error: retried."""
    config = EmailKind().validate(
        {
            "to": ["ops@example.com"],
            "from": "alerts@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "starttls": False,
        }
    )
    outcome = await EmailKind().send(
        samples.sample_message(EventType.TEST_STARTED), config, timeout=5
    )
    assert outcome.verdict is Verdict.RETRY
    assert "connection" in (outcome.error or "").lower()


async def test_required_starttls_missing_fails(smtp: SmtpServer) -> None:
    """starttls true against a server without STARTTLS fails for good (no plain fallback)."""
    outcome = await EmailKind().send(
        samples.sample_message(EventType.TEST_STARTED), smtp.config(starttls=True), timeout=5
    )
    assert outcome.verdict is Verdict.FAILED
    assert "STARTTLS" in (outcome.error or "")
    assert smtp.recorder.messages == []


# Mail servers that stop answering, for the rule that an attempt ends within 0.5 s after
# its timeout.
TIMEOUT = 1.0  # seconds: long enough that the 0.5 s bound means something
LATE = 0.5  # how far past its timeout an attempt may end, whatever the server does


@contextlib.contextmanager
def _never_accepting() -> Iterator[int]:
    """A port whose listener never accepts and whose queue is full, so connecting hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        # Linux queues backlog + 1 connections, then drops further SYNs: connect() hangs.
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            yield port


@contextlib.asynccontextmanager
async def _falls_silent(at: str) -> AsyncIterator[int]:
    """A raw SMTP server that plays along until ``at`` (the greeting, a command, the
    message's final dot) and from then on says nothing, keeping the connection open."""
    sessions: set[asyncio.Task[None]] = set()

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = asyncio.current_task()
        assert session is not None
        sessions.add(session)
        try:
            if at != "greeting":
                writer.write(b"220 test ESMTP\r\n")
                await _answer_until(at, reader, writer)
            await reader.read()  # silent until the client hangs up
        except ConnectionError:
            pass
        finally:
            writer.close()
            sessions.discard(session)

    server = await asyncio.start_server(play, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for session in sessions:
            session.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        await server.wait_closed()


async def _answer_until(
    at: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while line := await reader.readline():
        verb = line[:4].decode().upper()
        if verb == at:
            return
        if verb != "DATA":
            writer.write(b"250 ok\r\n")  # EHLO, MAIL FROM, RCPT TO
            continue
        writer.write(b"354 go ahead\r\n")
        while (await reader.readline()) not in (b".\r\n", b""):
            pass
        if at == "message":
            return
        writer.write(b"250 2.0.0 queued as 42\r\n")


def _config_for(port: int) -> dict[str, Any]:
    return EmailKind().validate(
        {
            "to": ["ops@example.com"],
            "from": "alerts@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "starttls": False,
        }
    )


@pytest.mark.parametrize(
    "silent_at",
    [
        "accept",  # the connection is never accepted
        "greeting",  # accepted, but no 220
        "MAIL",  # greeted and EHLO answered, then nothing
        "message",  # the whole message sent, and no answer to its final dot
    ],
)
async def test_a_silent_server_is_retried_when_the_timeout_ends(silent_at: str) -> None:
    """A mail server that stops answering gives a retry within 0.5 s after the timeout."""
    async with contextlib.AsyncExitStack() as stack:
        if silent_at == "accept":
            port = stack.enter_context(_never_accepting())
        else:
            port = await stack.enter_async_context(_falls_silent(silent_at))
        started = time.perf_counter()
        outcome = await EmailKind().send(
            samples.sample_message(EventType.TEST_STARTED), _config_for(port), timeout=TIMEOUT
        )
        elapsed = time.perf_counter() - started
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error == f"the mail server did not answer within {TIMEOUT:g} s"
    assert TIMEOUT - 0.05 <= elapsed <= TIMEOUT + LATE


async def test_an_accepted_message_is_delivered_even_if_quit_goes_unanswered() -> None:
    """Once the server has accepted the message, a QUIT it never answers costs neither the
    delivery nor the deadline."""
    async with _falls_silent("QUIT") as port:
        started = time.perf_counter()
        outcome = await EmailKind().send(
            samples.sample_message(EventType.TEST_STARTED), _config_for(port), timeout=TIMEOUT
        )
        elapsed = time.perf_counter() - started
    assert outcome.verdict is Verdict.DELIVERED, outcome.error
    assert outcome.status_code == 250
    assert outcome.body_excerpt is not None and "queued as 42" in outcome.body_excerpt
    assert elapsed <= TIMEOUT + LATE


@pytest.mark.parametrize("event", list(EventType), ids=lambda e: e.value)
def test_every_event_has_a_subject_and_both_parts(event: EventType) -> None:
    """Each event of the catalog renders a one-line subject, a text part and an HTML part."""
    preview = EmailKind().preview(
        samples.sample_message(event),
        EmailKind().validate(
            {"to": ["ops@example.com"], "from": "alerts@example.com", "smtp_host": "mx.example"}
        ),
    )
    mail = email.message_from_bytes(preview.body, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["Subject"] and "\n" not in mail["Subject"]
    assert mail.get_body(("plain",)) is not None and mail.get_body(("html",)) is not None


def test_subject_stays_one_line() -> None:
    """A project name with line breaks cannot break out of the Subject header."""
    message = samples.sample_message(
        EventType.PROJECT_CREATED, project={"id": 1, "name": "Shop\r\nBcc: x@example.com"}
    )
    preview = EmailKind().preview(
        message,
        EmailKind().validate(
            {"to": ["ops@example.com"], "from": "alerts@example.com", "smtp_host": "mx.example"}
        ),
    )
    mail = email.message_from_bytes(preview.body, policy=email.policy.default)
    assert mail["Bcc"] is None
    assert mail["Subject"] == "Project created: Shop Bcc: x@example.com"


def test_html_escapes_names() -> None:
    """Names with markup are escaped in the HTML part."""
    message = samples.sample_message(
        EventType.PROJECT_CREATED, project={"id": 1, "name": "<script>x</script>"}
    )
    preview = EmailKind().preview(
        message,
        EmailKind().validate(
            {"to": ["ops@example.com"], "from": "alerts@example.com", "smtp_host": "mx.example"}
        ),
    )
    mail = email.message_from_bytes(preview.body, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    html = mail.get_body(("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;" in html.get_content()


BASE = {"to": ["a@example.com"], "from": "b@example.com", "smtp_host": "mx.example.com"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": "a@example.com"}, "config.to"),  # a string, not a list
        ({"to": []}, "config.to"),
        ({"to": ["a@example.com", "nobody"]}, "config.to[1]"),
        ({"to": ["a@example.com, b@example.com"]}, "config.to[0]"),  # one address per item
        ({"from": "alerts"}, "config.from"),
        ({"from": "a@example.com\nBcc: x@example.com"}, "config.from"),  # header injection
        ({"smtp_host": ""}, "config.smtp_host"),
        ({"smtp_host": "smtp://mx.example.com"}, "config.smtp_host"),  # a URL, not a host
        ({"smtp_port": 0}, "config.smtp_port"),
        ({"smtp_port": "587"}, "config.smtp_port"),
        ({"smtp_username": "u"}, "config.smtp_password"),  # one without the other
        ({"smtp_password": "p"}, "config.smtp_username"),
        ({"starttls": "yes"}, "config.starttls"),
        ({"cc": ["c@example.com"]}, "config.cc"),  # unknown key
    ],
)
def test_bad_config_names_the_field(change: dict[str, Any], field: str) -> None:
    """Each invalid value is refused with the field to fix."""
    with pytest.raises(ConfigError) as info:
        EmailKind().validate({**BASE, **change})
    assert info.value.field == field


def test_config_defaults_and_secret() -> None:
    """Port 587 with STARTTLS by default; the password is the secret key."""
    clean = EmailKind().validate(BASE)
    assert clean["smtp_port"] == 587 and clean["starttls"] is True and clean["tls"] is False
    assert EmailKind.secret_keys == frozenset({"smtp_password"})


async def test_end_to_end_through_the_server(api: httpx.AsyncClient, smtp: SmtpServer) -> None:
    """Through the API: the test hook and a finished run arrive as mails; the password is
    masked and the attempt log records the SMTP server."""
    config = {
        "to": ["ops@example.com"],
        "from": "alerts@example.com",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "starttls": False,
    }
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "email",
            "name": "mail",
            "config": config,
            "events": ["test.finished"],
        },
    )
    assert r.status_code == 201, r.text
    channel_id = r.json()["id"]
    r = await api.post(f"/channels/{channel_id}/test")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.json()
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    await api.patch(f"/runs/{run['id']}", json={"status": 2})
    r = await api.patch(f"/runs/{run['id']}", json={"status": 3, "result": "failed"})
    assert r.status_code == 200, r.text
    for _ in range(200):
        if len(smtp.recorder.messages) >= 2:
            break
        await asyncio.sleep(0.05)
    subjects = [m["Subject"] for m in smtp.recorder.messages]
    assert subjects[0] == "Test notification from loadbell"
    assert subjects[1].startswith("Load test failed: checkout in ")
    # The attempt log is written in batches (up to 50 ms after the attempt): wait for it.
    for _ in range(100):
        params = {"channel_id": channel_id}
        deliveries = (await api.get("/deliveries", params=params)).json()["items"]
        if deliveries and all(d["status"] != "pending" for d in deliveries):
            break
        await asyncio.sleep(0.05)
    assert deliveries
    attempts = (await api.get(f"/deliveries/{deliveries[0]['id']}")).json()
    assert f"smtp://127.0.0.1:{smtp.port}" in str(attempts)
