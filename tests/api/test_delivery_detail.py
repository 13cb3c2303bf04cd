"""GET /deliveries/{id}: each attempt with the body sent and the response's headers, masked
as the rest of the attempt log; a deleted channel's delivery says so and is not sent again."""

from __future__ import annotations

import base64

import httpx
import orjson
from aiohttp import web

from api.support import (
    all_done,
    create_webhook,
    list_deliveries,
    new_run,
    set_status,
    wait_deliveries,
)
from loadbell.testing import Received, RecordingReceiver

BEARER = "Bearer s3cret-bearer-token"
CUSTOM = "custom-value-1234"
SIGNING = "whsec_" + base64.b64encode(b"k" * 32).decode()
URL_TOKEN = "urltoken-9f8e7d"


def answer(r: Received) -> web.Response:
    """A 201 that echoes the custom secret header in a header of its own, sets a cookie and
    says who it is."""
    return web.Response(
        status=201,
        text='{"received": true}',
        headers={
            "X-Echo": f"got {r.header('X-Api-Secret')}",
            "Set-Cookie": "session=abcdef123456; HttpOnly",
            "X-Request-Id": "req-42",
        },
    )


async def test_the_detail_has_the_body_sent_and_the_response_headers(
    api: httpx.AsyncClient,
) -> None:
    """The body is the one the receiver got, byte for byte; its headers show the signature,
    the credential and the custom header masked; the response headers show the cookie and
    the echoed secret masked, the rest as sent. A page of the list leaves both out."""
    async with RecordingReceiver(handler=answer) as rx:
        url = f"{rx.url}/hook/{URL_TOKEN}"
        await create_webhook(
            api,
            url,
            config={
                "url": url,
                "format": "loadimpact",
                "headers": {"Authorization": BEARER, "X-Api-Secret": CUSTOM},
                "signing_secrets": [SIGNING],
            },
        )
        run = await new_run(api)
        await set_status(api, run["id"], 2)
        [listed] = await wait_deliveries(api, all_done, run_id=run["id"])
        [got] = rx.requests
    assert "request_body" not in listed["attempts"][0]
    assert listed["channel_deleted"] is False

    r = await api.get(f"/deliveries/{listed['id']}")
    assert r.status_code == 200, r.text
    [attempt] = r.json()["attempts"]
    assert attempt["request_body"] == got.body.decode()
    assert attempt["request_body_bytes"] == len(got.body)
    sent = {k.lower(): v for k, v in attempt["request_headers"].items()}
    assert got.header("webhook-signature")  # it was signed: the log hides the signature
    assert sent["webhook-signature"] == "****"
    assert sent["authorization"] == "****" and sent["x-api-secret"] == "****"
    assert attempt["request_url"] == f"{rx.url}/****"
    back = {k.lower(): v for k, v in attempt["response_headers"].items()}
    assert back["set-cookie"] == "****"
    assert back["x-echo"] == "got ****"
    assert back["x-request-id"] == "req-42"
    assert attempt["response_status"] == 201
    assert attempt["response_body"] == '{"received": true}'
    shown = orjson.dumps(r.json()).decode()
    for secret in (BEARER, "s3cret-bearer-token", CUSTOM, URL_TOKEN, "abcdef123456", SIGNING):
        assert secret not in shown, secret


async def test_a_deleted_channels_delivery_is_marked_and_not_redelivered(
    api: httpx.AsyncClient,
) -> None:
    """After its channel is deleted, a failed delivery says channel_deleted in the list and
    the detail, and redelivering it is a 409 that changes nothing."""
    async with RecordingReceiver(status=500) as rx:
        channel = await create_webhook(api, f"{rx.url}/hook", retry={"max_attempts": 1})
        run = await new_run(api)
        await set_status(api, run["id"], 2)
        [delivery] = await wait_deliveries(api, all_done, run_id=run["id"])
    assert delivery["status"] == "failed"
    assert (await api.delete(f"/channels/{channel['id']}")).status_code == 204

    [listed] = await list_deliveries(api, run_id=run["id"])
    assert listed["channel_deleted"] is True
    assert (await api.get(f"/deliveries/{delivery['id']}")).json()["channel_deleted"] is True
    r = await api.post(f"/deliveries/{delivery['id']}/redeliver")
    assert r.status_code == 409, r.text
    assert "channel was deleted" in r.json()["message"]
    after = (await api.get(f"/deliveries/{delivery['id']}")).json()
    assert after["status"] == "failed" and after["series"] == delivery["series"]
