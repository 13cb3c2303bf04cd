"""The slack_app kind on its own: config validation, the chat.postMessage request for every
event, and how Slack's Web API answers map to delivered / retry / failed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from loadbell.channels.slack_app import MAX_TARGETS, SlackAppKind, refused_targets
from loadbell.domain.events import EventType
from loadbell.formats.samples import sample_message
from loadbell.values import ConfigError, Outcome, Verdict

KIND = SlackAppKind()
INSTALLED = {
    "targets": "#load-tests C0ALERTS1",
    "bot_token": "xoxb-T1-secret",
    "workspace": "Acme",
    "team_id": "T1",
    "api_base_url": "http://127.0.0.1:9/api",
}


@pytest.mark.parametrize(
    ("targets", "stored"),
    [
        ("#load-tests", "#load-tests"),  # a name
        ("load-tests", "#load-tests"),  # the '#' is optional
        ("#Load-Tests", "#load-tests"),  # Slack names are lower case
        ("C0123ABCD", "C0123ABCD"),  # a channel ID
        ("C123", "C123"),  # short IDs too
        ("  #a   #b\t#a ", "#a #b"),  # any whitespace separates; duplicates go
        ("#prüfung_2", "#prüfung_2"),  # non-Latin letters and '_' are allowed
        ("", ""),  # no targets yet (the organization default of seed 003)
    ],
)
def test_valid_targets_are_cleaned(targets: str, stored: str) -> None:
    """Targets are kept as IDs or lower-case #names, space-separated."""
    assert KIND.validate({"targets": targets})["targets"] == stored


@pytest.mark.parametrize(
    ("targets", "says"),
    [
        ("@bob", "'@bob' points at a user"),  # a person by name
        ("#ok @here", "'@here' points at a user"),  # one bad target spoils the value
        ("U0123ABCD", "points at a user"),  # a user ID
        ("W0123ABCD", "points at a user"),  # an Enterprise Grid user ID
        ("D0123ABCD", "is a direct message"),  # a DM
        ("G0123ABCD", "is a private channel"),  # a legacy private channel ID
        ("#has.period", "is not a Slack channel"),  # Slack names have no periods
        ("#" + "x" * 81, "is not a Slack channel"),  # at most 80 characters
        (" ".join(f"#c{i}" for i in range(MAX_TARGETS + 1)), f"at most {MAX_TARGETS}"),
    ],
)
def test_bad_targets_are_refused_with_a_reason(targets: str, says: str) -> None:
    """People, DMs, private IDs and malformed names are refused on config.targets."""
    with pytest.raises(ConfigError) as exc:
        KIND.validate({"targets": targets})
    assert exc.value.field == "config.targets"
    assert says in exc.value.message


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"targets": ["#a"]}, "config.targets"),  # a string, as the table says
        ({"webhook_url": "https://hooks.slack.com/x"}, "config.webhook_url"),  # kind slack's
        ({"api_base_url": "ftp://x"}, "config.api_base_url"),
        ({"api_base_url": "http://2130706433:9/api"}, "config.api_base_url"),  # not canonical
        ({"rate_limit": {"count": 0, "per": 1}}, "config.rate_limit.count"),
    ],
)
def test_other_config_errors_name_the_field(config: dict[str, Any], field: str) -> None:
    """Unknown keys and bad values are refused on the field that is wrong."""
    with pytest.raises(ConfigError) as exc:
        KIND.validate(config)
    assert exc.value.field == field


def test_install_data_survives_validation() -> None:
    """What the install flow wrote passes validate() unchanged (PATCH re-validates it)."""
    assert KIND.validate(INSTALLED) == INSTALLED


@pytest.mark.parametrize("event", list(EventType))
def test_render_posts_blocks_to_the_target_with_the_bot_token(event: EventType) -> None:
    """Every event renders a chat.postMessage for the delivery's target, the token in a
    secret Authorization header, within Block Kit's limits."""
    message = replace(sample_message(event), target="C0ALERTS1")
    request = KIND.render(message, KIND.validate(INSTALLED))
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:9/api/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-T1-secret"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "Authorization" in request.secret_headers
    body = orjson.loads(request.body)
    assert body["channel"] == "C0ALERTS1"
    assert isinstance(body["text"], str) and body["text"]
    blocks = body["blocks"]
    assert 1 <= len(blocks) <= 50
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        assert len(block.get("fields", [])) <= 10


def test_render_defaults_to_slacks_api_and_refuses_an_incomplete_config() -> None:
    """Without api_base_url the real Slack API is used; no token or no target is an error
    that says what to do, never a request without credentials."""
    message = replace(sample_message(EventType.TEST_FINISHED), target="#load-tests")
    config = {"targets": "#load-tests", "bot_token": "xoxb-1"}
    assert KIND.render(message, config).url == "https://slack.com/api/chat.postMessage"
    with pytest.raises(ConfigError, match="not installed"):
        KIND.render(message, {"targets": "#load-tests"})
    with pytest.raises(ConfigError, match="no target channel"):
        KIND.render(replace(message, target=None), config)


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({}, ["integration data", "target channels"]),  # the organization default
        ({"targets": "#a"}, ["integration data"]),  # targets, but not installed
        ({"bot_token": "xoxb-1", "targets": ""}, ["target channels"]),  # installed only
        ({"bot_token": "xoxb-1", "targets": "#a"}, []),  # complete
    ],
)
def test_missing_says_what_a_test_message_still_needs(
    config: dict[str, Any], missing: list[str]
) -> None:
    """missing() names integration data and target channels (seed 003's "complete")."""
    said = KIND.missing(config)
    assert len(said) == len(missing)
    for phrase, expected in zip(said, missing, strict=True):
        assert phrase.startswith(expected)


def _answer(status: int, body: Any, verdict: Verdict, retry_after: float | None = None) -> Outcome:
    text = body if isinstance(body, str) else orjson.dumps(body).decode()
    return Outcome(verdict, status_code=status, body_excerpt=text, retry_after=retry_after)


OK = {"ok": True, "channel": "C1", "ts": "1.2"}
# The sender's verdict from the status alone, then the kind's from Slack's body.
CASES = [
    # (sender's outcome, verdict after interpret, error contains)
    (_answer(200, OK, Verdict.DELIVERED), Verdict.DELIVERED, None),  # posted
    (  # the message echo made the body longer than the 4 KiB the log keeps
        _answer(
            200, '{"ok":true,"channel":"C1","message":{"text":"' + "x" * 5000, Verdict.DELIVERED
        ),
        Verdict.DELIVERED,
        None,
    ),
    (  # every failure is HTTP 200 with ok:false
        _answer(200, {"ok": False, "error": "channel_not_found"}, Verdict.DELIVERED),
        Verdict.FAILED,
        "Slack said channel_not_found: the channel does not exist",
    ),
    (  # the bot may not post to that channel
        _answer(200, {"ok": False, "error": "not_in_channel"}, Verdict.DELIVERED),
        Verdict.FAILED,
        "chat:write.public",
    ),
    (  # the channel was archived
        _answer(200, {"ok": False, "error": "is_archived"}, Verdict.DELIVERED),
        Verdict.FAILED,
        "archived",
    ),
    (  # the app was uninstalled
        _answer(200, {"ok": False, "error": "invalid_auth"}, Verdict.DELIVERED),
        Verdict.FAILED,
        "set up the Slack integration again",
    ),
    (  # no token was sent
        _answer(200, {"ok": False, "error": "not_authed"}, Verdict.DELIVERED),
        Verdict.FAILED,
        "no bot token",
    ),
    (  # our bug: retrying cannot help
        _answer(200, {"ok": False, "error": "invalid_blocks"}, Verdict.DELIVERED),
        Verdict.FAILED,
        "loadbell bug",
    ),
    (  # an error code we have no hint for is still recorded
        _answer(200, {"ok": False, "error": "team_access_not_granted"}, Verdict.DELIVERED),
        Verdict.FAILED,
        "Slack said team_access_not_granted",
    ),
    (  # Slack's own trouble is worth another attempt
        _answer(200, {"ok": False, "error": "internal_error"}, Verdict.DELIVERED),
        Verdict.RETRY,
        "internal_error",
    ),
    (  # HTTP 429 + Retry-After
        _answer(429, {"ok": False, "error": "ratelimited"}, Verdict.RETRY, retry_after=30.0),
        Verdict.RETRY,
        "ratelimited; retrying after 30 s",
    ),
    (  # ok:false without a code
        _answer(200, {"ok": False}, Verdict.DELIVERED),
        Verdict.FAILED,
        "an unnamed error",
    ),
    (  # a 200 that is not the Web API (a proxy's page, a wrong api_base_url)
        _answer(200, "<html>hello</html>", Verdict.DELIVERED),
        Verdict.FAILED,
        "is config.api_base_url the Slack Web API?",
    ),
    (  # a 503 page from a proxy stays a retry
        _answer(503, "Service Unavailable", Verdict.RETRY),
        Verdict.RETRY,
        None,
    ),
    (  # no answer at all: the sender's verdict and error stand
        Outcome(Verdict.RETRY, error="timed out after 10 s"),
        Verdict.RETRY,
        "timed out",
    ),
]


@pytest.mark.parametrize(("outcome", "verdict", "error"), CASES)
def test_interpret_reads_slacks_body(outcome: Outcome, verdict: Verdict, error: str | None) -> None:
    """chat.postMessage answers map to delivered / retry / failed with Slack's code."""
    after = KIND.interpret(outcome)
    assert after.verdict is verdict
    if error is None:
        assert after.error == outcome.error
    else:
        assert after.error is not None and error in after.error


def test_pacing_is_per_workspace_and_channel() -> None:
    """About one message per second per channel (Slack's limit), keyed by team and target."""
    rate = KIND.rate(INSTALLED)
    assert rate is not None and (rate.count, rate.per) == (1, 1.0)
    message = replace(sample_message(EventType.TEST_FINISHED), target="#load-tests")
    assert KIND.destination(message, INSTALLED) == "T1:#load-tests"


REFUSED = {"team_id": "T1", "targets": {"C0ALERTS1": "C0ALERTS1 is archived", "#gone": "x"}}


@pytest.mark.parametrize(
    ("check", "refused"),
    [
        # the install's check in this workspace: listed targets only (#gone was removed)
        (REFUSED, {"C0ALERTS1": "C0ALERTS1 is archived"}),
        # a check made in another workspace (an inherited one) does not apply
        ({**REFUSED, "team_id": "T2"}, {}),
        (None, {}),  # never checked, or checked and fine
    ],
)
def test_the_install_check_blocks_refused_targets(
    check: dict[str, Any] | None, refused: dict[str, str]
) -> None:
    """Targets the install's check refused make the config incomplete and are not
    rendered; the others still are."""
    config = KIND.validate({**INSTALLED, "target_problems": check})
    assert refused_targets(config) == refused
    lacks = [m for m in KIND.missing(config) if m.startswith("target channels Slack accepts")]
    assert bool(lacks) == bool(refused)
    message = replace(sample_message(EventType.TEST_STARTED), target="C0ALERTS1")
    if refused:
        with pytest.raises(ConfigError, match="C0ALERTS1 is archived; not posted"):
            KIND.render(message, config)
    else:
        assert KIND.render(message, config).url.endswith("/chat.postMessage")
    assert KIND.render(replace(message, target="#load-tests"), config).body


def test_a_malformed_check_is_refused() -> None:
    """target_problems has one shape, written by loadbell."""
    with pytest.raises(ConfigError) as err:
        KIND.validate({**INSTALLED, "target_problems": {"targets": ["#a"]}})
    assert err.value.field == "config.target_problems"
