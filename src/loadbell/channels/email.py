"""The email channel: one HTML + plain-text message per event, over SMTP (aiosmtplib).

Config: ``to`` (a list of addresses), ``from``, ``smtp_host``, ``smtp_port`` (587),
``smtp_username`` and ``smtp_password`` (both or neither), ``starttls`` (true: require
STARTTLS) and ``tls`` (true: implicit TLS, usually port 465; ``starttls`` is then unused).

SMTP replies map to the shared verdicts: 2xx delivered, 4xx retried, 5xx failed; a
connection that cannot be made or drops is retried. The SSRF guard of the HTTP sender
does not apply: mail relays usually live on private networks (docs/channels.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any

import aiosmtplib

from loadbell.domain.events import EventType
from loadbell.formats import plaintext
from loadbell.formats.summary import Severity, Summary, summarize
from loadbell.values import ConfigError, Message, OutboundRequest, Outcome, Verdict

CONFIG_KEYS = (
    "to",
    "from",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_password",
    "starttls",
    "tls",
)
MAX_RECIPIENTS = 50

COLORS = {
    Severity.INFO: "#2563eb",
    Severity.SUCCESS: "#16a34a",
    Severity.WARNING: "#d97706",
    Severity.ERROR: "#dc2626",
}


def _address(value: Any, field: str) -> str:
    if not isinstance(value, str) or "\n" in value or "\r" in value:
        raise ConfigError(field, "must be one email address such as alerts@example.com")
    found = getaddresses([value.strip()])
    addr = found[0][1] if len(found) == 1 else ""
    local, _, domain = addr.rpartition("@")
    if not local or "." not in domain or " " in addr:
        raise ConfigError(field, f"'{value}' is not an email address such as alerts@example.com")
    return value.strip()


def _bool(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(field, "must be true or false")
    return value


def subject(message: Message, summary: Summary) -> str:
    if message.event_type is EventType.TEST_NOTIFICATION_CHANNEL:
        return summary.title
    return " ".join(summary.text.split())[:200]  # one line: a CR or LF would break the header


def _footer(message: Message) -> str:
    org = (message.context.get("organization") or {}).get("name")
    return f"Sent by loadbell{f' for {org}' if org else ''} ({message.event_type})."


def text_body(message: Message, summary: Summary) -> str:
    return f"{plaintext.render(summary)}\n\n-- \n{_footer(message)}\n"


def html_body(message: Message, summary: Summary) -> str:
    e = html.escape
    color = COLORS[summary.severity]
    rows = "".join(
        f'<tr><td style="padding:2px 12px 2px 0;color:#555">{e(name)}</td><td>{e(value)}</td></tr>'
        for name, value in summary.facts
    )
    thresholds = "".join(
        f'<li style="color:{"#16a34a" if ok else "#dc2626"}">'
        f"{'passed' if ok else 'FAILED'}: {e(expr)}</li>"
        for expr, ok in summary.thresholds
    )
    parts = [
        '<!doctype html><html><body style="font-family:sans-serif;font-size:14px">',
        f'<div style="border-left:6px solid {color};padding:8px 12px">',
        f'<h2 style="margin:0 0 8px 0;color:{color}">{e(summary.title)}</h2>',
        f"<p>{e(summary.text)}</p>",
        f"<table>{rows}</table>" if rows else "",
        f"<p><b>Thresholds</b></p><ul>{thresholds}</ul>" if thresholds else "",
        f'<p><a href="{e(summary.link)}">View the run</a></p>' if summary.link else "",
        "</div>",
        f'<p style="color:#888;font-size:12px">{e(_footer(message))}</p>',
        "</body></html>",
    ]
    return "".join(parts)


def build(message: Message, config: Mapping[str, Any]) -> EmailMessage:
    summary = summarize(message)
    mail = EmailMessage()
    mail["From"] = config["from"]
    mail["To"] = ", ".join(config["to"])
    mail["Subject"] = subject(message, summary)
    mail["Date"] = format_datetime(datetime.now(UTC))
    # Stable across retries, so a mail system that saw attempt 1 can drop attempt 2.
    mail["Message-ID"] = f"<{message.delivery_id}@loadbell>"
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    mail["X-Loadbell-Event"] = message.event_type.value
    mail.set_content(text_body(message, summary))
    mail.add_alternative(html_body(message, summary), subtype="html")
    return mail


def _server(config: Mapping[str, Any]) -> str:
    return f"smtp://{config['smtp_host']}:{config.get('smtp_port') or 587}"


def _logged_headers(mail: EmailMessage) -> dict[str, str]:
    return {k: str(mail[k]) for k in ("From", "To", "Subject", "Message-ID")}


def _verdict(code: int) -> Verdict:
    return Verdict.RETRY if 400 <= code < 500 else Verdict.FAILED


class EmailKind:
    name = "email"
    secret_keys = frozenset({"smtp_password"})
    defaults: Mapping[str, Any] = {"smtp_port": 587, "starttls": True}

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - set(CONFIG_KEYS)
        if unknown:
            raise ConfigError(
                f"config.{sorted(unknown)[0]}", f"unknown key; email takes {', '.join(CONFIG_KEYS)}"
            )
        to = config.get("to")
        if not isinstance(to, list) or not to:
            raise ConfigError(
                "config.to", 'must be a list of addresses such as ["ops@example.com"]'
            )
        if len(to) > MAX_RECIPIENTS:
            raise ConfigError("config.to", f"at most {MAX_RECIPIENTS} recipients")
        recipients = list(dict.fromkeys(_address(a, f"config.to[{i}]") for i, a in enumerate(to)))
        host = config.get("smtp_host")
        if (
            not isinstance(host, str)
            or not host.strip()
            or len(host) > 253
            or any(c in host for c in "/:@ \n")
        ):
            raise ConfigError(
                "config.smtp_host",
                "must be the mail server's host name or IP, such as smtp.example.com",
            )
        port = config.get("smtp_port", self.defaults["smtp_port"])
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError("config.smtp_port", "must be a port number (587, 465 or 25 usually)")
        username, password = config.get("smtp_username"), config.get("smtp_password")
        if username is not None and not isinstance(username, str):
            raise ConfigError("config.smtp_username", "must be a string")
        if password is not None and not isinstance(password, str):
            raise ConfigError("config.smtp_password", "must be a string")
        if bool(username) != bool(password):
            missing = "smtp_password" if username else "smtp_username"
            raise ConfigError(
                f"config.{missing}", "give both smtp_username and smtp_password, or neither"
            )
        clean: dict[str, Any] = {
            "to": recipients,
            "from": _address(config.get("from"), "config.from"),
            "smtp_host": host.strip(),
            "smtp_port": port,
            "starttls": _bool(config.get("starttls"), "config.starttls", True),
            "tls": _bool(config.get("tls"), "config.tls", False),
        }
        if username:
            clean["smtp_username"] = username
            clean["smtp_password"] = password
        return clean

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        return frozenset(EventType)  # the summary words every event

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        raise NotImplementedError("email goes out over SMTP through send(), not over HTTP")

    def preview(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        """What :meth:`send` would hand to the mail server: the whole MIME message."""
        mail = build(message, config)
        return OutboundRequest(
            url=_server(config),
            body=mail.as_bytes(),
            headers=_logged_headers(mail),
            method="SMTP",
            mask_url=False,
        )

    async def send(self, message: Message, config: Mapping[str, Any], timeout: float) -> Outcome:
        mail = build(message, config)
        base: dict[str, Any] = {
            "request_url": _server(config),
            "request_headers": _logged_headers(mail),
        }
        tls = bool(config.get("tls"))
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + timeout
        client = aiosmtplib.SMTP(
            hostname=config["smtp_host"],
            port=int(config.get("smtp_port") or 587),
            username=config.get("smtp_username") or None,
            password=config.get("smtp_password") or None,
            use_tls=tls,
            start_tls=False if tls else bool(config.get("starttls", True)),
            timeout=timeout,
        )

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        # Not aiosmtplib.send: when the deadline cancels it mid-session, its context manager
        # still sends QUIT and waits up to another full timeout for the answer.
        try:
            async with asyncio.timeout_at(deadline):
                await client.connect()
                refused, reply = await client.send_message(mail)
            # The message is accepted, so the verdict is in; QUIT is a courtesy that gets
            # what is left of the deadline and cannot turn a delivery into a failure.
            with contextlib.suppress(TimeoutError, aiosmtplib.SMTPException, OSError):
                async with asyncio.timeout_at(deadline):
                    await client.quit()
        except TimeoutError:
            return Outcome(
                Verdict.RETRY,
                error=f"the mail server did not answer within {timeout:g} s",
                duration_ms=elapsed(),
                **base,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            temporary = any(400 <= c < 500 for c in codes)
            return Outcome(
                Verdict.RETRY if temporary else Verdict.FAILED,
                status_code=min(codes) if temporary else max(codes),
                error=f"the mail server refused every recipient ({detail})",
                duration_ms=elapsed(),
                **base,
            )
        except aiosmtplib.SMTPResponseException as exc:
            hint = ""
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                hint = "; check config.smtp_username and config.smtp_password"
            return Outcome(
                _verdict(exc.code),
                status_code=exc.code,
                body_excerpt=exc.message[:4096],
                error=f"SMTP {exc.code} {exc.message}{hint}",
                duration_ms=elapsed(),
                **base,
            )
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            return Outcome(
                Verdict.RETRY,
                error=f"connection error: {exc.__class__.__name__}: {exc}",
                duration_ms=elapsed(),
                **base,
            )
        except aiosmtplib.SMTPException as exc:
            # STARTTLS or AUTH not offered, ...: retrying will not change the server.
            return Outcome(Verdict.FAILED, error=f"SMTP: {exc}", duration_ms=elapsed(), **base)
        finally:
            client.close()
        partial = "; ".join(f"{addr}: {r.code} {r.message}" for addr, r in refused.items())
        return Outcome(
            Verdict.DELIVERED,
            status_code=250,
            body_excerpt=(reply + (f" (refused: {partial})" if partial else ""))[:4096],
            duration_ms=elapsed(),
            **base,
        )
