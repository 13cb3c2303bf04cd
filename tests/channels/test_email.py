"""The email kind against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
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


async def test_slow_server_times_out_as_retry() -> None:
    """A server that accepts the connection but never greets is retried after the timeout."""
    held: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = EmailKind().validate(
        {
            "to": ["ops@example.com"],
            "from": "alerts@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "starttls": False,
        }
    )
    async with server:
        outcome = await EmailKind().send(
            samples.sample_message(EventType.TEST_STARTED), config, timeout=0.5
        )
        for writer in held:
            writer.close()
            await writer.wait_closed()
    assert outcome.verdict is Verdict.RETRY
    assert "0.5 s" in (outcome.error or "")


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
