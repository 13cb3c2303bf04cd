"""The attempt log masks the channel's own secret values in what a receiver sends back."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from aiohttp import web

from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from loadbell.channels.webhook import WebhookKind
from loadbell.delivery.exchange import REQUEST_BODY_BYTES
from loadbell.delivery.setup import ChannelSetup
from loadbell.domain.retry import RetryPolicy
from loadbell.testing import Received, RecordingReceiver
from loadbell.values import Outcome, Verdict

BEARER = "Bearer s3cret-bearer-token"
SIGNING = "whsec_" + base64.b64encode(b"k" * 32).decode()
URL_TOKEN = "urltoken-9f8e7d"


@pytest.fixture
async def echo() -> AsyncIterator[RecordingReceiver]:
    """A receiver that answers with the path and headers it got: a 400 for /bad, else 200."""

    def handler(r: Received) -> web.Response:
        headers = {str(k): v for k, v in r.headers.items()}
        body = orjson.dumps({"path": r.path, "headers": headers}).decode()
        return web.Response(status=400 if r.path.startswith("/bad") else 200, text=body)

    async with RecordingReceiver(handler=handler) as rx:
        yield rx


@pytest.mark.parametrize("path", ["/ok", "/bad"])
async def test_echoed_secrets_are_masked_in_the_attempt_log(
    api: httpx.AsyncClient, echo: RecordingReceiver, path: str
) -> None:
    """A receiver echoing the Authorization header, a custom secret header and the URL
    token back (in a 200, or in a 400 whose error quotes the body) has none of them stored
    or shown: the attempt log, the delivery's last error and the test hook show ****."""
    url = f"{echo.url}{path}/hook?token={URL_TOKEN}"
    channel = await create_webhook(
        api,
        url,
        config={
            "url": url,
            "format": "loadimpact",
            "headers": {"Authorization": BEARER, "X-Api-Secret": "custom-value-1234"},
            "signing_secrets": [SIGNING],
        },
    )
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    [delivery] = await wait_deliveries(api, all_done, run_id=run["id"])
    tested = (await api.post(f"/channels/{channel['id']}/test")).json()

    # The receiver did echo them: without masking they would be in the log.
    [first, *_] = echo.requests
    assert first.header("Authorization") == BEARER
    assert URL_TOKEN in first.path

    [attempt] = delivery["attempts"]
    shown = orjson.dumps([attempt, delivery["last_error"], tested]).decode()
    for secret in (BEARER, "s3cret-bearer-token", "custom-value-1234", URL_TOKEN):
        assert secret not in shown, (secret, shown)
    assert "****" in (attempt["response_body"] or "")
    if path == "/bad":
        assert attempt["outcome"] == "failed" and "****" in attempt["error"]
        assert "****" in delivery["last_error"]
    else:
        assert attempt["outcome"] == "delivered"
    # What is not secret stays readable.
    assert "Content-Type" in attempt["response_body"]


def _setup(secrets: frozenset[str]) -> ChannelSetup:
    return ChannelSetup(
        kind=WebhookKind(),
        config={},
        enabled=True,
        policy=RetryPolicy(),
        events=frozenset(),
        paced=False,
        rate=None,
        timeout=10.0,
        transport=None,
        interpret=None,
        secrets=secrets,
    )


def test_redact_masks_a_secret_in_a_response_header_every_time() -> None:
    """A secret echoed in a response header value is masked, also when the same value
    comes back again (header values are masked once and remembered)."""
    setup = _setup(frozenset({URL_TOKEN}))
    outcome = Outcome(
        Verdict.DELIVERED,
        200,
        request_body='{"a": 1}',
        response_headers={"Location": f"/hook?token={URL_TOKEN}", "Server": "rx"},
    )
    for _ in range(2):
        masked = setup.redact(outcome)
        assert masked.response_headers == {"Location": "/hook?token=****", "Server": "rx"}
        assert masked.request_body == '{"a": 1}'


def test_redact_keeps_an_outcome_with_nothing_to_mask() -> None:
    """An exchange that holds none of the channel's secrets is kept as it is, cut-off
    starts of a secret at the end of a text still masked."""
    setup = _setup(frozenset({URL_TOKEN}))
    clean = Outcome(
        Verdict.DELIVERED, 200, body_excerpt="ok", request_body="{}", response_headers={"A": "b"}
    )
    assert setup.redact(clean) is clean
    cut = Outcome(Verdict.DELIVERED, 200, body_excerpt="echo: " + URL_TOKEN[:8])
    assert setup.redact(cut).body_excerpt == "echo: ****"


def test_redact_checks_the_end_of_the_body_sent_only_when_the_log_cut_it() -> None:
    """The body sent ends inside a secret only when the log kept just its start: a whole
    body's end is its own text, a cut one's end has the secret's start masked."""
    setup = _setup(frozenset({URL_TOKEN}))
    ending = "x" * 10 + URL_TOKEN[:8]
    whole = Outcome(Verdict.DELIVERED, 200, request_body=ending, request_body_bytes=len(ending))
    assert setup.redact(whole).request_body == ending
    cut = Outcome(
        Verdict.DELIVERED, 200, request_body=ending, request_body_bytes=REQUEST_BODY_BYTES + 1
    )
    assert setup.redact(cut).request_body == "x" * 10 + "****"
    # Without its size, the body may have been cut: its end is checked.
    unsized = Outcome(Verdict.DELIVERED, 200, request_body=ending)
    assert setup.redact(unsized).request_body == "x" * 10 + "****"
    # A secret inside the body is masked either way.
    holding = f"token={URL_TOKEN}&"
    whole = Outcome(Verdict.DELIVERED, 200, request_body=holding, request_body_bytes=len(holding))
    assert setup.redact(whole).request_body == "token=****&"
