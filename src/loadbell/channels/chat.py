"""What the chat kinds (Slack, Teams, Discord, HipChat, Mattermost) share.

Each chat kind renders the same :class:`ChatView` in its own markup, so a run reads the
same everywhere: a headline with a pass/fail/abort cue, what it is about (project, load
test, status, trigger, who started it, duration), the key figures, the thresholds (failed
first), short notes (what changed, which threshold was crossed) and a link to the run.

The helpers here also cover the config every chat kind takes (one webhook URL plus an
optional ``rate_limit``) and reading the error bodies chat services send back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from loadbell import __version__
from loadbell.channels.rate_limit import validate_rate_limit
from loadbell.channels.webhook import validate_url
from loadbell.domain import regression
from loadbell.domain.events import EventType
from loadbell.domain.statuses import RunStatus
from loadbell.formats.summary import Severity, Summary, comparison_of, figures, summarize
from loadbell.values import ConfigError, Message, OutboundRequest, Outcome, Rate, Verdict

USER_AGENT = f"loadbell/{__version__}"

# Every event has a human-readable rendering, the test hook included.
CHAT_EVENTS: frozenset[EventType] = frozenset(EventType)

# Thresholds listed one per line; a run with hundreds of them gets the failed ones first
# and a "... and N more" line, because nobody reads 200 lines in a chat window.
MAX_THRESHOLD_LINES = 40
MAX_LINE = 200  # characters per threshold line or note

_EVENT_CUES: dict[EventType, str] = {
    EventType.TEST_STARTING: "⏳",
    EventType.TEST_STARTED: "🚀",
    EventType.TEST_REPORT_INTERMEDIATE: "📊",
    EventType.TEST_REPORT_AVAILABLE: "📄",
    EventType.TEST_THRESHOLD_FAILED: "⚠️",
    EventType.TEST_REGRESSED: "📉",
    EventType.LOAD_TEST_CREATED: "🆕",
    EventType.LOAD_TEST_UPDATED: "✏️",
    EventType.LOAD_TEST_DELETED: "🗑️",
    EventType.PROJECT_CREATED: "🆕",
    EventType.PROJECT_UPDATED: "✏️",
    EventType.PROJECT_DELETED: "🗑️",
    EventType.TEST_NOTIFICATION_CHANNEL: "🔔",
    EventType.CHANNEL_DISABLED: "⛔",
}
PASS_CUE, FAIL_CUE, ABORT_CUE, TIMEOUT_CUE = "✅", "❌", "🛑", "⏱️"
THRESHOLD_OK, THRESHOLD_FAILED = "✅", "❌"

# Colors per severity: hex for Slack-style attachments, integers for Discord embeds.
HEX_COLORS: dict[Severity, str] = {
    Severity.SUCCESS: "#2EB67D",
    Severity.ERROR: "#E01E5A",
    Severity.WARNING: "#ECB22E",
    Severity.INFO: "#5B6B7F",
}


@dataclass(frozen=True)
class ChatView:
    """A notification, in words, before any kind's markup."""

    event: EventType
    severity: Severity
    cue: str  # one emoji: pass / fail / abort / event
    title: str  # "Load test passed"
    headline: str  # "✅ Load test passed: checkout"
    text: str  # the one-line summary, also the plain-text fallback
    about: list[tuple[str, str]]  # (label, value): project, load test, status, trigger, ...
    figures: list[tuple[str, str]]  # (label, value): requests, avg, p95, error rate, Apdex
    thresholds: list[tuple[str, bool]]  # (expression, ok), failed first
    failed_thresholds: int
    notes: list[str]  # plain lines: what changed, which threshold was crossed, ...
    link: str | None  # the run page
    link_label: str
    footer: str  # "loadbell · test.finished"
    occurred_at: datetime  # when the event happened, UTC

    @property
    def threshold_heading(self) -> str:
        total = len(self.thresholds)
        if not self.failed_thresholds:
            return f"Thresholds: all {total} passed" if total > 1 else "Threshold passed"
        return f"Thresholds: {self.failed_thresholds} of {total} failed"

    @property
    def timestamp(self) -> str:
        return self.occurred_at.isoformat(timespec="seconds").replace("+00:00", "Z")

    def threshold_rows(self, limit: int | None = None) -> tuple[list[tuple[str, bool]], str | None]:
        """The first ``limit`` thresholds (default :data:`MAX_THRESHOLD_LINES`), expressions
        cut to a line, and, when some are left out, a closing line saying how many and how
        many of those failed."""
        limit = MAX_THRESHOLD_LINES if limit is None else limit
        shown = [(truncate(expr, MAX_LINE), ok) for expr, ok in self.thresholds[:limit]]
        return shown, more_line(self.thresholds[limit:])


def mark(ok: bool) -> str:
    return THRESHOLD_OK if ok else THRESHOLD_FAILED


def more_line(hidden: list[tuple[str, bool]]) -> str | None:
    if not hidden:
        return None
    failed = sum(1 for _, ok in hidden if not ok)
    detail = f"{failed} failed, {len(hidden) - failed} passed" if failed else "all passed"
    return f"… and {len(hidden)} more thresholds ({detail}); see the run page"


def pack_lines(
    lines: list[str], chunk_limit: int, max_chunks: int, char_budget: int | None = None
) -> tuple[list[str], int]:
    """Join ``lines`` with newlines into at most ``max_chunks`` chunks of at most
    ``chunk_limit`` characters (and ``char_budget`` in all). Returns the chunks and how
    many lines they hold. A line longer than a chunk is cut; once a limit is reached, the
    remaining lines are left out whole (the caller counts them in a "... and N more")."""
    chunks: list[str] = []
    total = 0
    used = 0
    for line in lines:
        line = truncate(line, chunk_limit)
        cost = len(line) + (1 if chunks else 0)
        if char_budget is not None and total + cost > char_budget:
            break
        if chunks and len(chunks[-1]) + 1 + len(line) <= chunk_limit:
            chunks[-1] += "\n" + line
        elif len(chunks) < max_chunks:
            chunks.append(line)
        else:
            break
        total += cost
        used += 1
    return chunks, used


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _cue(message: Message, severity: Severity) -> str:
    if message.event_type is not EventType.TEST_FINISHED:
        return _EVENT_CUES[message.event_type]
    run = message.context.get("run") or {}
    status = RunStatus(run.get("status", int(RunStatus.FINISHED)))
    if status is RunStatus.FINISHED:
        return PASS_CUE if severity is Severity.SUCCESS else FAIL_CUE
    return TIMEOUT_CUE if status is RunStatus.TIMED_OUT else ABORT_CUE


def _changes(extra: Mapping[str, Any]) -> list[str]:
    changes = extra.get("changes")
    if not isinstance(changes, Mapping):
        return []
    lines: list[str] = []
    for name, change in changes.items():
        if isinstance(change, (list, tuple)) and len(change) == 2:
            lines.append(f"Changed {name}: “{change[0]}” → “{change[1]}”")
        else:
            lines.append(f"Changed {name}: {change}")
    return lines


def view(message: Message) -> ChatView:
    """Everything a chat kind shows for ``message``, in display order."""
    summary: Summary = summarize(message)
    ctx = message.context
    event = message.event_type
    project = (ctx.get("project") or {}).get("name")
    load_test = (ctx.get("load_test") or {}).get("name")
    run = ctx.get("run") or {}
    cue = _cue(message, summary.severity)

    subject = load_test or project
    if event is EventType.TEST_NOTIFICATION_CHANNEL:
        subject = None
    headline = f"{cue} {summary.title}" + (f": {subject}" if subject else "")

    about: list[tuple[str, str]] = []
    if project:
        about.append(("Project", str(project)))
    elif event is EventType.TEST_NOTIFICATION_CHANNEL and ctx.get("organization"):
        about.append(("Organization", str(ctx["organization"].get("name", "?"))))
    if load_test:
        about.append(("Load test", str(load_test)))
    figure_rows = figures(run.get("metrics") or {}, comparison_of(run)) if run else []
    figure_labels = {label for label, _ in figure_rows}
    for label, value in summary.facts:
        if label not in figure_labels:
            about.append((label, value[:1].upper() + value[1:] if label == "Trigger" else value))

    notes: list[str] = []
    extra = ctx.get("extra") or {}
    threshold = extra.get("threshold")
    if event is EventType.TEST_THRESHOLD_FAILED and isinstance(threshold, Mapping):
        notes.append(f"Crossed: {threshold.get('metric')}: {threshold.get('expression')}")
    notes.extend(_changes(extra))
    comparison = comparison_of(run)
    if event is EventType.TEST_REGRESSED and comparison:
        for figure in regression.regressed_figures(comparison):
            notes.append(f"Regressed: {regression.describe(comparison, figure)}")
    if event is EventType.TEST_NOTIFICATION_CHANNEL:
        notes.append(summary.text)

    ordered = [t for t in summary.thresholds if not t[1]] + [t for t in summary.thresholds if t[1]]
    return ChatView(
        event=event,
        severity=summary.severity,
        cue=cue,
        title=summary.title,
        headline=headline,
        text=summary.text,
        about=about,
        figures=figure_rows,
        thresholds=ordered,
        failed_thresholds=sum(1 for _, ok in ordered if not ok),
        notes=[truncate(n, MAX_LINE) for n in notes],
        link=summary.link,
        link_label="View run",
        footer=f"loadbell · {event.value}",
        occurred_at=_utc(message.occurred_at),
    )


# -- config ----------------------------------------------------------------------------

Extra = Callable[[Any], Any]  # validates one optional key; raises ConfigError


def validate_config(
    kind: str,
    config: Mapping[str, Any],
    url_key: str,
    extras: Mapping[str, Extra] | None = None,
) -> dict[str, Any]:
    """Check a chat kind's config: its webhook URL, ``rate_limit`` and any ``extras``."""
    extras = extras or {}
    allowed = [url_key, *extras, "rate_limit"]
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ConfigError(f"config.{unknown[0]}", f"unknown key; {kind} takes {', '.join(allowed)}")
    if not config.get(url_key):
        raise ConfigError(
            f"config.{url_key}",
            f"is required: paste the {kind} webhook URL (https://...) that should receive "
            "the messages",
        )
    clean: dict[str, Any] = {url_key: validate_url(config.get(url_key), f"config.{url_key}")}
    for key, check in extras.items():
        if config.get(key) is not None:
            clean[key] = check(config[key])
    if config.get("rate_limit") is not None:
        try:
            clean["rate_limit"] = validate_rate_limit(config["rate_limit"])
        except ValueError as exc:
            field, _, msg = str(exc).partition(": ")
            raise ConfigError(field, msg) from None
    return clean


def json_request(
    url: str,
    payload: Any,
    headers: Mapping[str, str] | None = None,
    secret_headers: frozenset[str] = frozenset(),
) -> OutboundRequest:
    return OutboundRequest(
        url=url,
        body=orjson.dumps(payload),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        },
        secret_headers=secret_headers,
    )


def destination(url: str) -> str:
    """The pacing key of a webhook URL: a digest, so the token never sits in a key."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


# -- responses -------------------------------------------------------------------------


def json_body(outcome: Outcome) -> Any:
    try:
        return orjson.loads(outcome.body_excerpt or "")
    except orjson.JSONDecodeError:
        return None


def json_error(outcome: Outcome) -> str | None:
    """The human part of a JSON error body, in the shapes chat services use:
    ``{"message": ...}`` (Discord, Mattermost), ``{"error": {"message": ...}}`` (HipChat,
    Teams Workflows), ``{"success": false, "error": "..."}`` (Rocket.Chat)."""
    body = json_body(outcome)
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping):
        parts = [str(error[k]) for k in ("code", "message") if error.get(k)]
        return ": ".join(parts) or None
    if isinstance(error, str) and error:
        return error
    message = body.get("message")
    return str(message) if message else None


def explain(outcome: Outcome, service: str, detail: str) -> Outcome:
    """Replace the attempt's error with ``detail``, keeping the status up front."""
    status = f"HTTP {outcome.status_code}: " if outcome.status_code is not None else ""
    return replace(outcome, error=f"{status}{service} said {detail}")


def retry_later(outcome: Outcome, error: str, after: float | None) -> Outcome:
    return replace(outcome, verdict=Verdict.RETRY, error=error, retry_after=after)


class UrlChatKind:
    """A chat kind that POSTs one JSON message to one secret URL (Slack's incoming webhook,
    Teams, Discord, Mattermost). A subclass names itself and gives its ``payload`` and
    ``explain``; validation, rendering, pacing and the destination key are the same for all.
    """

    name: str
    url_key = "url"
    secret_keys = frozenset({"url"})  # the URL carries the service's token
    default_rate: Rate | None = None  # None: no limit unless ``config.rate_limit`` sets one
    defaults: Mapping[str, Any] = {}

    @staticmethod
    def payload(message: Message) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def explain(outcome: Outcome) -> Outcome:
        return outcome

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return validate_config(self.name, config, self.url_key)

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        return CHAT_EVENTS

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        return json_request(config[self.url_key], self.payload(message))

    def interpret(self, outcome: Outcome) -> Outcome:
        return self.explain(outcome)

    def rate(self, config: Mapping[str, Any]) -> Rate | None:
        return self.default_rate

    def destination(self, message: Message, config: Mapping[str, Any]) -> str:
        return destination(config[self.url_key])
