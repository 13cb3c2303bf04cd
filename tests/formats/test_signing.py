"""Standard Webhooks signing, checked against the spec's vector and the PyPI implementation."""

from __future__ import annotations

import base64
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import EventType
from loadbell.formats import samples, signing
from loadbell.testing import RecordingReceiver
from loadbell.values import ConfigError

# The spec's test vector (shared/reference/integration-facts.md 3.7).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 24).decode()


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_spec_test_vector() -> None:
    """Our HMAC over id.timestamp.body gives the spec's signature."""
    key = signing.decode_secret(VECTOR_SECRET)
    assert signing.sign(key, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_headers_verify_with_standardwebhooks() -> None:
    """The independent implementation accepts what we sign, and rejects a changed body."""
    got = signing.headers("msg_1", b'{"a":1}', [{"secret": OLD}])
    assert set(got) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert got["webhook-id"] == "msg_1"
    assert abs(int(got["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(OLD).verify(b'{"a":1}', got) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(b'{"a":2}', got)


def test_rotation_window_signs_with_both_secrets() -> None:
    """While the old secret has not expired, each secret alone verifies the request."""
    secrets = [{"secret": OLD, "expires_at": _iso(timedelta(hours=1))}, {"secret": NEW}]
    got = signing.headers("msg_2", b"{}", secrets)
    assert len(got["webhook-signature"].split(" ")) == 2
    for secret in (OLD, NEW):
        Webhook(secret).verify(b"{}", got)


def test_expired_secret_no_longer_signs() -> None:
    """After its expiry the old secret is dropped: only the new one verifies."""
    secrets = [{"secret": OLD, "expires_at": _iso(-timedelta(seconds=1))}, {"secret": NEW}]
    got = signing.headers("msg_3", b"{}", secrets)
    assert len(got["webhook-signature"].split(" ")) == 1
    Webhook(NEW).verify(b"{}", got)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(b"{}", got)


def test_nothing_left_to_sign_is_an_error() -> None:
    """A channel whose secrets all expired does not send unsigned requests."""
    with pytest.raises(signing.SigningError, match="expired"):
        signing.headers("m", b"{}", [{"secret": OLD, "expires_at": _iso(-timedelta(hours=1))}])


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ("whsec_x", "config.signing_secrets", "must be a list"),  # not a list
        (["abc"], "config.signing_secrets[0].secret", "must start with 'whsec_'"),
        (["whsec_!!!"], "config.signing_secrets[0].secret", "not valid base64"),
        (  # 16 bytes: below the spec's 24
            ["whsec_" + base64.b64encode(b"s" * 16).decode()],
            "config.signing_secrets[0].secret",
            "decodes to 16 bytes",
        ),
        (  # 65 bytes: above the spec's 64
            ["whsec_" + base64.b64encode(b"s" * 65).decode()],
            "config.signing_secrets[0].secret",
            "decodes to 65 bytes",
        ),
        (
            [NEW, {"secret": OLD, "expires_at": "soon"}],
            "config.signing_secrets[1].expires_at",
            "ISO",
        ),
        ([{"secret": OLD, "note": "x"}], "config.signing_secrets[0].note", "unknown key"),
        ([{"key": OLD}], "config.signing_secrets[0]", "whsec_"),
        (  # only expired secrets: nothing would sign
            [{"secret": OLD, "expires_at": "2020-01-01T00:00:00Z"}],
            "config.signing_secrets",
            "every secret has expired",
        ),
    ],
)
def test_bad_secrets_are_refused(value: Any, field: str, words: str) -> None:
    """Each malformed signing_secrets value names its field and says what to do."""
    with pytest.raises(ConfigError) as info:
        WebhookKind().validate({"url": "http://127.0.0.1:9/", "signing_secrets": value})
    assert info.value.field == field
    assert words in info.value.message


def test_secrets_are_cleaned_to_one_shape() -> None:
    """Plain strings and objects become {"secret", "expires_at"?}; times become UTC with Z."""
    clean = WebhookKind().validate(
        {
            "url": "http://127.0.0.1:9/",
            "signing_secrets": [NEW, {"secret": OLD, "expires_at": "2999-01-01T02:00:00+02:00"}],
        }
    )
    assert clean["signing_secrets"] == [
        {"secret": NEW},
        {"secret": OLD, "expires_at": "2999-01-01T00:00:00Z"},
    ]
    assert "signing_secrets" in WebhookKind.secret_keys


@pytest.mark.parametrize("name", ["webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE"])
def test_custom_headers_cannot_forge_signing_headers(name: str) -> None:
    """The signing headers are loadbell's, under every format."""
    with pytest.raises(ConfigError) as info:
        WebhookKind().validate(
            {"url": "http://127.0.0.1:9/", "format": "loadmance", "headers": {name: "x"}}
        )
    assert info.value.field == f"config.headers.{name}"


@pytest.mark.parametrize("fmt", ["loadimpact", "loadimpact-legacy", "loadmance"])
def test_signing_headers_go_alongside_the_format_headers(fmt: str) -> None:
    """A signed request keeps its format's headers and its custom headers."""
    config = WebhookKind().validate(
        {
            "url": "http://127.0.0.1:9/",
            "format": fmt,
            "headers": {"X-T": "1"},
            "signing_secrets": [NEW],
        }
    )
    message = samples.sample_message(EventType.TEST_STARTED)
    request = WebhookKind().render(message, config)
    unsigned = WebhookKind().render(message, {**config, "signing_secrets": []})
    assert request.headers["webhook-id"] == message.delivery_id
    assert {k: v for k, v in request.headers.items() if not k.startswith("webhook-")} == (
        unsigned.headers
    )
    Webhook(NEW).verify(request.body, request.headers)


async def test_delivered_requests_verify_end_to_end(api: httpx.AsyncClient) -> None:
    """Through the server: each attempt verifies with either rotation secret, the retry
    carries the same webhook-id, and the API never shows the secrets."""
    async with RecordingReceiver(statuses=deque([503])) as rx:
        r = await api.post(
            "/channels",
            json={
                "organization_id": 1,
                "kind": "webhook",
                "name": "signed",
                "config": {
                    "url": f"{rx.url}/hook",
                    "format": "loadimpact",
                    "signing_secrets": [
                        {"secret": OLD, "expires_at": _iso(timedelta(days=1))},
                        NEW,
                    ],
                },
                "retry": {"base_delay": 0.0},
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["config"]["signing_secrets"] == ["****", "****"]
        channel_id = r.json()["id"]
        r = await api.post(f"/channels/{channel_id}/test")
        assert r.status_code == 200, r.text
        got = await rx.wait_for(2)
    for received in got:
        for secret in (OLD, NEW):
            Webhook(secret).verify(received.body, received.headers)
        assert received.header("webhook-id") == received.header("X-LoadImpact-ID")
    assert got[0].header("webhook-id") == got[1].header("webhook-id")


async def test_bad_secret_is_a_422_through_the_api(api: httpx.AsyncClient) -> None:
    """Saving a malformed secret answers 422 naming the secret's field."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": "signed",
            "config": {"url": "http://127.0.0.1:9/", "signing_secrets": ["secret"]},
        },
    )
    assert r.status_code == 422
    assert r.json()["field"] == "config.signing_secrets[0].secret"
    assert "whsec_" in r.json()["message"]
