"""The Apprise channel: any Apprise URL, to reach the 100+ services loadbell does not model.

Config: ``url`` (secret), e.g. ``tgram://bottoken/ChatID`` or ``json://host:port/path``.
Apprise is synchronous, so :meth:`AppriseKind.send` runs it in a thread
(``asyncio.to_thread``); its result and its warnings go into the same attempt log as every
other delivery. Apprise makes its own connections: the HTTP sender's SSRF guard does not
apply (docs/channels.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import apprise
import orjson
from apprise.manager_plugins import NotificationManager

from loadbell.domain.events import EventType
from loadbell.formats import plaintext
from loadbell.formats.summary import Severity, summarize
from loadbell.security.masking import MASK, mask_path
from loadbell.values import ConfigError, Message, OutboundRequest, Outcome, Verdict

NOTIFY_TYPES = {
    Severity.INFO: apprise.NotifyType.INFO,
    Severity.SUCCESS: apprise.NotifyType.SUCCESS,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.ERROR: apprise.NotifyType.FAILURE,
}
# Seconds of the attempt's timeout kept back from the limit Apprise is given. Apprise stops
# waiting for a service 0.1 s after that limit; with this much kept back, its own timeout
# result, which names the service in its log, comes back before the attempt's deadline.
_HEADROOM = 0.15


def content(message: Message) -> tuple[str, str, apprise.NotifyType]:
    """(title, plain-text body, notify type): what Apprise is asked to send."""
    summary = summarize(message)
    return summary.title, plaintext.render(summary), NOTIFY_TYPES[summary.severity]


def _scheme_only(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else "apprise"
    return f"{scheme}://{MASK}"


def logged_url(url: str) -> str:
    """Apprise's own privacy form of the URL (tokens shortened), with the path and query
    hidden as for every other channel; only the scheme when even that fails."""
    try:
        plugin = apprise.Apprise.instantiate(url)
        if plugin is not None:
            private = plugin.url(privacy=True)  # type: ignore[no-untyped-call]
            # Apprise's privacy form is made to be shown; path and query stay hidden.
            return mask_path(str(private).split("?", 1)[0])
    except Exception:  # a URL Apprise cannot even print must not break the attempt log
        pass
    return _scheme_only(url)


def _prepare(url: str) -> str:
    """Blocking: runs in a worker thread. Loads Apprise's plugins, which it imports on first
    use (100+ modules, seconds on a busy machine; a no-op afterwards), and returns the URL
    as the attempt log shows it."""
    NotificationManager().load_modules()  # type: ignore[no-untyped-call]
    return logged_url(url)


def _notify(url: str, title: str, body: str, kind: apprise.NotifyType, timeout: float) -> Outcome:
    """Blocking: runs in a worker thread."""
    client = apprise.Apprise()
    if not client.add(url):
        return Outcome(Verdict.FAILED, error="Apprise does not recognise the channel's URL")
    with client.notify(
        body=body,
        title=title,
        notify_type=kind,
        body_format=apprise.NotifyFormat.TEXT,
        timeout=timeout,
    ) as result:
        status = result.status
        logs = [f"{entry.level}: {entry.message}" for entry in result.logs()]
    excerpt = "\n".join(logs)[:4096] or None
    if status == apprise.AppriseResultStatus.SUCCESS:
        return Outcome(Verdict.DELIVERED, body_excerpt=excerpt)
    if status == apprise.AppriseResultStatus.NOMATCH:
        return Outcome(Verdict.FAILED, body_excerpt=excerpt, error="Apprise sent nothing")
    # Apprise reports no status code, so a failure cannot be told temporary or permanent:
    # retry, and let the retry policy bound the attempts.
    what = "timed out" if status == apprise.AppriseResultStatus.TIMEOUT else "failed"
    last = logs[-1] if logs else "no details"
    return Outcome(Verdict.RETRY, body_excerpt=excerpt, error=f"Apprise {what}: {last}")


class AppriseKind:
    name = "apprise"
    secret_keys = frozenset({"url"})
    defaults: Mapping[str, Any] = {}

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - {"url"}
        if unknown:
            raise ConfigError(f"config.{sorted(unknown)[0]}", "unknown key; apprise takes url")
        url = config.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(
                "config.url", "is required: give an Apprise URL such as tgram://bottoken/ChatID"
            )
        url = url.strip()
        if len(url) > 2048 or apprise.Apprise.instantiate(url) is None:
            raise ConfigError(
                "config.url",
                "Apprise does not recognise this URL; see the Apprise wiki for each "
                "service's URL form (https://github.com/caronc/apprise/wiki)",
            )
        return {"url": url}

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        return frozenset(EventType)  # the summary words every event

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        raise NotImplementedError("apprise sends through send(), not through the HTTP sender")

    def preview(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        """What :meth:`send` hands to Apprise; the service's own wire format is Apprise's."""
        title, body, kind = content(message)
        return OutboundRequest(
            url=logged_url(config["url"]),
            body=orjson.dumps({"title": title, "body": body, "type": str(kind.value)}),
            headers={},
            method="APPRISE",
            mask_url=False,
        )

    async def send(self, message: Message, config: Mapping[str, Any], timeout: float) -> Outcome:
        title, body, kind = content(message)
        url = config["url"]
        started = time.perf_counter()
        shown = _scheme_only(url)  # until Apprise has printed the URL
        # One deadline for all of it: a worker thread can be slow to come free (the pool is
        # shared with DNS lookups and other attempts), and Apprise may be slow to load.
        try:
            async with asyncio.timeout(timeout):
                shown = await asyncio.to_thread(_prepare, url)
                left = timeout - (time.perf_counter() - started) - _HEADROOM
                # Apprise takes 0 as "no limit", so it always gets a positive one.
                outcome = await asyncio.to_thread(_notify, url, title, body, kind, max(left, 0.01))
        except TimeoutError:
            outcome = Outcome(Verdict.RETRY, error=f"Apprise did not finish within {timeout:g} s")
        except Exception as exc:  # a plugin bug must not read as a worker bug
            outcome = Outcome(
                Verdict.FAILED, error=f"Apprise raised {exc.__class__.__name__}: {exc}"
            )
        return Outcome(
            outcome.verdict,
            body_excerpt=outcome.body_excerpt,
            error=outcome.error,
            duration_ms=(time.perf_counter() - started) * 1000,
            request_url=shown,
            request_headers={},
        )
