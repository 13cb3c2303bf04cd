"""The Slack app (seed 003): bot messages through ``chat.postMessage``, one per target channel.

Config, as the API shows it::

    targets       "#load-tests C0123ABCD"  public channels, by name or ID, space-separated
    rate_limit    optional, see delivery/pacing.py (default: 1 message/s per channel)
    -- install data: written by the OAuth install flow (services/slack.py), never typed --
    bot_token     secret, the xoxb- token oauth.v2.access returned
    workspace     the workspace name (team.name), shown so people see where messages go
    team_id       the workspace ID (T...)
    api_base_url  the Slack Web API the token belongs to (LOADBELL_SLACK_API_BASE_URL at
                  install time; render() has no settings, and a token is only good for the
                  API that issued it)
    -- written by the target check (services/slack_checks.py), never typed --
    target_problems  {"team_id": "T...", "targets": {"#secret": "why"}}: targets saved
                  before the install that Slack refused when the install checked them
                  (private, unknown, archived, or the same channel as another target).
                  Until they are fixed, the test message is refused and deliveries to
                  them fail without calling Slack.

Slack answers ``chat.postMessage`` with HTTP 200 even when it fails, so ``interpret`` reads
the body: ``{"ok": false, "error": "channel_not_found"}`` fails the attempt with the code and
a hint; ``ratelimited`` (HTTP 429 + ``Retry-After``) and Slack's own outages are retried.
Whether a target is public needs Slack (``conversations.info``), so that check runs in the
API layer when targets are saved (services/slack_checks.py), not in ``validate``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from loadbell import __version__
from loadbell.channels import slack
from loadbell.channels.rate_limit import validate_rate_limit
from loadbell.channels.webhook import validate_url
from loadbell.domain.events import EventType
from loadbell.values import ConfigError, Message, OutboundRequest, Outcome, Rate, Verdict

DEFAULT_API_BASE = "https://slack.com/api"
INSTALL_KEYS = ("bot_token", "workspace", "team_id", "api_base_url")
CHECK_KEY = "target_problems"
MAX_TARGETS = 20
# chat.postMessage: about one message per second per channel, short bursts allowed.
RATE = Rate(count=1, per=1.0, burst=3)

_CHANNEL_ID = re.compile(r"^C[A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_DM_ID = re.compile(r"^D[A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^G[A-Z0-9]{2,}$")  # legacy private channels
# Slack channel names: lower case letters, digits, '-' and '_' (and non-Latin letters),
# at most 80 characters; no spaces or periods.
_NAME = re.compile(r"^[\w-]{1,80}$")

# Slack's error codes that a later attempt can get past; every other code is final.
RETRYABLE = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)

_REINSTALL = "set up the Slack integration again (GET /api/v1/slack/install)"
_BUG = "the message was malformed; this is a loadbell bug, please report it"
# chat.postMessage error code -> what the person reading the attempt log should do.
ERRORS: dict[str, str] = {
    "channel_not_found": "the channel does not exist in the workspace, or it is private "
    "(loadbell posts to public channels only); check config.targets",
    "not_in_channel": "the app may not post there; reinstall it with the chat:write.public "
    "scope, or invite it to the channel",
    "is_archived": "the channel is archived; unarchive it or remove it from config.targets",
    "restricted_action": "a workspace admin restricted posting in this channel",
    "not_authed": f"no bot token was sent; {_REINSTALL}",
    "invalid_auth": f"Slack does not accept the bot token; {_REINSTALL}",
    "token_revoked": f"the app was uninstalled or its token revoked; {_REINSTALL}",
    "account_inactive": f"the app was uninstalled or its token revoked; {_REINSTALL}",
    "missing_scope": f"the app lacks the chat:write scope; {_REINSTALL}",
    "ratelimited": "Slack's rate limit; loadbell retries",
    "msg_too_long": _BUG,
    "no_text": _BUG,
    "invalid_blocks": _BUG,
    "invalid_json": _BUG,
    "too_many_attachments": _BUG,
}

_OK = re.compile(rb'"ok"\s*:\s*(true|false)')
_ERROR = re.compile(rb'"error"\s*:\s*"([a-z0-9_]+)"')


def parse_target(raw: str) -> str:
    """A target as we store it: a channel ID (``C0123ABCD``) or ``#name`` in lower case.
    Raise ValueError, written for the user, for people, DMs and private channels."""
    if raw.startswith("@") or _USER_ID.match(raw):
        raise ValueError(
            f"'{raw}' points at a user; the Slack app posts to public channels only, never "
            "to people. Use a channel such as #load-tests"
        )
    if _DM_ID.match(raw):
        raise ValueError(f"'{raw}' is a direct message; use a public channel such as #load-tests")
    if _GROUP_ID.match(raw):
        raise ValueError(f"'{raw}' is a private channel; the Slack app posts to public ones only")
    if _CHANNEL_ID.match(raw):
        return raw
    name = raw.removeprefix("#").lower()
    if not _NAME.match(name):
        raise ValueError(
            f"'{raw}' is not a Slack channel: use its name (#load-tests: lower case letters, "
            "digits, '-' and '_', at most 80 characters) or its ID (C0123ABCD)"
        )
    return f"#{name}"


def parse_targets(value: Any) -> list[str]:
    """The targets of ``config.targets`` (space-separated), cleaned and de-duplicated."""
    if value is None:
        return []
    if not isinstance(value, str):
        raise ConfigError(
            "config.targets", 'must be a string of channels separated by spaces: "#a #b"'
        )
    out: list[str] = []
    for raw in value.split():
        try:
            target = parse_target(raw)
        except ValueError as exc:
            raise ConfigError("config.targets", str(exc)) from None
        if target not in out:
            out.append(target)
    if len(out) > MAX_TARGETS:
        raise ConfigError("config.targets", f"at most {MAX_TARGETS} channels per Slack channel")
    return out


def _check_value(value: Any) -> dict[str, Any]:
    field = f"config.{CHECK_KEY}"
    targets = value.get("targets") if isinstance(value, Mapping) else None
    if (
        not isinstance(value, Mapping)
        or not isinstance(value.get("team_id"), str)
        or not isinstance(targets, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in targets.items())
    ):
        raise ConfigError(field, "is written by loadbell's check of the targets with Slack")
    return {"team_id": value["team_id"], "targets": dict(targets)}


def refused_targets(config: Mapping[str, Any]) -> dict[str, str]:
    """The listed targets the install's check refused, with why: {"#secret": "..."}.
    A check made in another workspace (an inherited one) does not apply."""
    check = config.get(CHECK_KEY)
    if not isinstance(check, Mapping) or check.get("team_id") != config.get("team_id"):
        return {}
    listed = set(_listed(config))
    return {t: str(why) for t, why in (check.get("targets") or {}).items() if t in listed}


def _listed(config: Mapping[str, Any]) -> list[str]:
    try:
        return parse_targets(config.get("targets"))
    except ConfigError:
        return []


_FIX = "fix them in Slack and save config.targets again, or remove them from config.targets"


def _install_value(key: str, value: Any) -> str:
    field = f"config.{key}"
    if key == "api_base_url":
        return validate_url(value, field).rstrip("/")
    if not isinstance(value, str) or not value.strip() or len(value) > 500 or "\n" in value:
        raise ConfigError(field, "comes from the Slack install flow and must be a short string")
    return value.strip()


def slack_answer(excerpt: str | None) -> tuple[bool | None, str | None]:
    """``ok`` and ``error`` of a Web API reply. The attempt log keeps 4 KiB of a body, and
    a long message echo may be cut there, so when the JSON does not parse we read the two
    fields from the text: Slack writes them first."""
    raw = (excerpt or "").encode()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        ok_match, error_match = _OK.search(raw), _ERROR.search(raw)
        ok = None if ok_match is None else ok_match.group(1) == b"true"
        return ok, error_match.group(1).decode() if error_match else None
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        return None, None
    error = body.get("error")
    return body["ok"], str(error) if error else None


def explain(outcome: Outcome) -> Outcome:
    """Correct the sender's verdict from the Web API's body (HTTP 200 + ``ok: false``)."""
    if outcome.status_code is None:  # no answer (timeout, refused): the sender decided
        return outcome
    ok, code = slack_answer(outcome.body_excerpt)
    status = outcome.status_code
    if status == 429 or code in ("ratelimited", "rate_limited"):
        wait = f"{outcome.retry_after:g} s" if outcome.retry_after is not None else "a while"
        return replace(
            outcome,
            verdict=Verdict.RETRY,
            error=f"HTTP {status}: Slack said ratelimited; retrying after {wait}",
        )
    if ok is True and outcome.delivered:
        return outcome
    if ok is False or code is not None:
        code = code or "an unnamed error"
        hint = ERRORS.get(code)
        verdict = Verdict.RETRY if code in RETRYABLE else Verdict.FAILED
        detail = f"{code}: {hint}" if hint else code
        return replace(outcome, verdict=verdict, error=f"HTTP {status}: Slack said {detail}")
    if outcome.delivered:  # a 2xx that is not a Web API reply
        return replace(
            outcome,
            verdict=Verdict.FAILED,
            error=f"HTTP {status} without Slack's JSON 'ok' field; is config.api_base_url "
            "the Slack Web API?",
        )
    return outcome


class SlackAppKind:
    """``slack_app``: ``{"targets": "#load-tests C0123ABCD"}`` plus the install data."""

    name = "slack_app"
    secret_keys = frozenset({"bot_token"})
    default_events = slack.DEFAULT_EVENTS
    defaults: Mapping[str, Any] = {"targets": ""}

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        allowed = ("targets", "rate_limit", *INSTALL_KEYS, CHECK_KEY)
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            raise ConfigError(
                f"config.{unknown[0]}",
                "unknown key; slack_app takes targets and rate_limit (the bot token and "
                "workspace come from the install flow)",
            )
        clean: dict[str, Any] = {"targets": " ".join(parse_targets(config.get("targets")))}
        for key in INSTALL_KEYS:
            if config.get(key) not in (None, ""):
                clean[key] = _install_value(key, config[key])
        if config.get(CHECK_KEY):
            clean[CHECK_KEY] = _check_value(config[CHECK_KEY])
        if config.get("rate_limit") is not None:
            try:
                clean["rate_limit"] = validate_rate_limit(config["rate_limit"])
            except ValueError as exc:
                field, _, msg = str(exc).partition(": ")
                raise ConfigError(field, msg) from None
        return clean

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        return frozenset(EventType)  # every event has a human-readable rendering

    def missing(self, config: Mapping[str, Any]) -> list[str]:
        """What an effective config still lacks before it can send (seed 003: "a complete
        configuration, i.e. integration data and target channels")."""
        out: list[str] = []
        if not config.get("bot_token"):
            out.append(
                "integration data (run 'Set up Slack integration': "
                "GET /api/v1/slack/install?channel_id=...)"
            )
        if not parse_targets(config.get("targets")):
            out.append('target channels (config.targets, e.g. "#load-tests")')
        refused = refused_targets(config)
        if refused:
            out.append(
                "target channels Slack accepts: " + "; ".join(refused.values()) + f". {_FIX}"
            )
        return out

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        token = config.get("bot_token")
        if not token:
            raise ConfigError(
                "config.bot_token",
                "the Slack app is not installed for this channel (or project); an owner or "
                "admin runs GET /api/v1/slack/install?channel_id=...",
            )
        if not message.target:
            raise ConfigError("config.targets", "no target channel is set; add #channels")
        refused = refused_targets(config).get(message.target)
        if refused:  # known to fail (or to post twice): Slack is not asked
            raise ConfigError("config.targets", f"{refused}; not posted. {_FIX}")
        base = str(config.get("api_base_url") or DEFAULT_API_BASE).rstrip("/")
        body = {"channel": message.target, **slack.payload(message), "unfurl_links": False}
        return OutboundRequest(
            url=f"{base}/chat.postMessage",
            body=orjson.dumps(body),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Authorization": f"Bearer {token}",
                "User-Agent": f"loadbell/{__version__}",
            },
            secret_headers=frozenset({"Authorization"}),
            mask_url=False,  # the Web API URL carries no secret; the token is a header
        )

    def interpret(self, outcome: Outcome) -> Outcome:
        return explain(outcome)

    def rate(self, config: Mapping[str, Any]) -> Rate | None:
        return RATE

    def destination(self, message: Message, config: Mapping[str, Any]) -> str:
        # Per workspace and channel; a token digest stands in when team_id is unknown.
        team = (
            config.get("team_id")
            or hashlib.sha256(str(config.get("bot_token")).encode()).hexdigest()[:16]
        )
        return f"{team}:{message.target}"
