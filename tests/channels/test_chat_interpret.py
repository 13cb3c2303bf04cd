"""Each chat kind reads its service's replies: what is retried, when, and what is logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from loadbell.channels.registry import get_kind
from loadbell.delivery.sender import classify
from loadbell.values import Outcome, Verdict

TEAMS_429 = "Microsoft Teams endpoint returned HTTP error 429"


@dataclass(frozen=True)
class Case:
    status: int
    body: str
    verdict: Verdict
    error: str | None = None  # a part of the logged error; None: no error
    retry_after: float | None = None  # what the sender read from Retry-After
    expect_after: float | None = None  # what the kind says to wait


def sent(case: Case) -> Outcome:
    """The shared sender's verdict before the kind looks at it."""
    verdict = classify(case.status)
    return Outcome(
        verdict,
        status_code=case.status,
        body_excerpt=case.body,
        error=None if verdict is Verdict.DELIVERED else f"HTTP {case.status}: {case.body}",
        retry_after=case.retry_after,
    )


def js(value: Any) -> str:
    return orjson.dumps(value).decode()


D, R, F = Verdict.DELIVERED, Verdict.RETRY, Verdict.FAILED

TABLE: list[tuple[str, str, Case]] = [
    # -- Slack: plain-text error codes (api.slack.com changelog 2016-05-17) --
    ("slack", "ok", Case(200, "ok", D)),
    ("slack", "bad payload", Case(400, "invalid_payload", F, "invalid_payload: the message")),
    ("slack", "no text", Case(400, "no_text", F, "no_text")),  # unknown code: kept as is
    ("slack", "channel gone", Case(404, "channel_not_found", F, "channel_not_found: the")),
    ("slack", "archived", Case(410, "channel_is_archived", F, "unarchive it")),
    ("slack", "disabled hook", Case(404, "no_service", F, "no_service: the webhook is")),
    ("slack", "admin rule", Case(403, "action_prohibited", F, "workspace admin")),
    ("slack", "slack fault", Case(500, "rollup_error", R, "loadbell retries")),
    ("slack", "rate limited", Case(429, "rate_limited", R, "retrying after 3 s", 3.0, 3.0)),
    ("slack", "429, no header", Case(429, "", R, "Slack rate limit", None, None)),
    ("slack", "html error", Case(502, "<html>Bad gateway</html>", R, "Bad gateway")),
    # -- Discord: JSON errors; 429 retry_after in the body wins over the header --
    ("discord", "no content", Case(204, "", D)),
    ("discord", "wait=true", Case(200, js({"id": "1"}), D)),
    (
        "discord",
        "429 body",
        Case(429, js({"message": "You are being rate limited.", "retry_after": 0.42,
                      "global": False}), R, "Discord rate limit (webhook)", 1.0, 0.42),
    ),
    (
        "discord",
        "429 global",
        Case(429, js({"retry_after": 2.5, "global": True}), R, "(global)", None, 2.5),
    ),
    ("discord", "429 header only", Case(429, "error code: 1015", R, "after 7 s", 7.0, 7.0)),
    (
        "discord",
        "deleted webhook",
        Case(404, js({"message": "Unknown Webhook", "code": 10015}), F,
             "Unknown Webhook: the webhook was deleted"),
    ),
    (
        "discord",
        "bad form",
        Case(400, js({"message": "Invalid Form Body", "code": 50035,
                      "errors": {"embeds": {"_errors": []}}}), F, "Invalid Form Body {\"embeds\""),
    ),
    ("discord", "bad token", Case(401, js({"message": "Invalid Webhook Token"}), F, "Invalid")),
    ("discord", "server error", Case(503, "upstream connect error", R, "upstream")),
    # -- Teams: Workflows 202, legacy 200 "1", throttling inside a 200 body --
    ("teams", "workflows", Case(202, "", D)),
    ("teams", "legacy ok", Case(200, "1", D)),
    ("teams", "throttled in 200", Case(200, TEAMS_429, R, "Teams throttled this webhook")),
    (
        "teams",
        "flow error",
        Case(400, js({"error": {"code": "InvalidRequestContent", "message": "bad"}}), F,
             "Teams said InvalidRequestContent: bad"),
    ),
    ("teams", "flow 429", Case(429, "", R, None, 5.0, 5.0)),
    # -- HipChat: 204, JSON errors --
    ("hipchat", "sent", Case(204, "", D)),
    (
        "hipchat",
        "bad token",
        Case(401, js({"error": {"code": 401, "message": "Invalid OAuth session",
                                "type": "Unauthorized"}}), F,
             "HipChat said 401: Invalid OAuth session"),
    ),
    ("hipchat", "server down", Case(503, "", R)),
    # -- Mattermost / Rocket.Chat --
    ("mattermost", "mattermost ok", Case(200, "ok", D)),
    ("mattermost", "rocket.chat ok", Case(200, js({"success": True}), D)),
    (
        "mattermost",
        "rocket.chat refusal in a 200",
        Case(200, js({"success": False, "error": "invalid-channel"}), F, "invalid-channel"),
    ),
    (
        "mattermost",
        "mattermost refusal",
        Case(400, js({"id": "web.incoming_webhook.text.app_error",
                      "message": "No text specified.", "status_code": 400}), F,
             "No text specified."),
    ),
    ("mattermost", "disabled hook", Case(404, "", F)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "case"), [(k, c) for k, _, c in TABLE], ids=[n for _, n, _ in TABLE]
)
def test_interpret(kind: str, case: Case) -> None:
    """The kind's verdict, wait and logged error for one reply of its service."""
    interpret = get_kind(kind).interpret
    out = interpret(sent(case))
    assert out.verdict is case.verdict
    if case.error is None:
        if case.verdict is Verdict.DELIVERED:
            assert out.error is None
    else:
        assert out.error is not None and case.error in out.error, out.error
    if case.verdict is Verdict.RETRY:
        assert out.retry_after == case.expect_after
    assert out.status_code == case.status  # the log keeps the real status


@pytest.mark.parametrize("kind", ["slack", "discord", "teams", "hipchat", "mattermost"])
def test_transport_failures_pass_through(kind: str) -> None:
    """A timeout or refused connection (no status) keeps the sender's verdict and error."""
    before = Outcome(Verdict.RETRY, error="timed out after 10 s (connect, response and body)")
    assert get_kind(kind).interpret(before) == before
