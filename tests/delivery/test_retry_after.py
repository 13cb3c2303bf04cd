"""A receiver's Retry-After waits within the retry policy's cap, for the delivery and for its
destination as a whole."""

from __future__ import annotations

import httpx
from aiohttp import web

from conftest import webhook_channel
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received


async def test_retry_after_beyond_max_delay_waits_max_delay(api: httpx.AsyncClient) -> None:
    """A 429 with Retry-After: 120 is retried after the channel's max_delay (1.5 s here; 10 s
    by default), not after 120 s, although the destination is held too."""

    async def first_throttled(_: Received) -> web.Response:
        if len(rx.requests) == 1:
            return web.Response(status=429, headers={"Retry-After": "120"})
        return web.Response(status=204)

    async with RecordingReceiver(handler=first_throttled) as rx:
        hook = webhook_channel(f"{rx.url}/hook", events=["test.started"], retry={"max_delay": 1.5})
        assert (await api.post("/channels", json=hook)).status_code == 201
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "ra"})).json()
        assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
        first, second = await rx.wait_for(2, timeout=30)
    waited = second.at - first.at
    assert 1.4 <= waited < 30, f"the retry came {waited:.1f} s later"
    assert second.header("X-LoadImpact-ID") == first.header("X-LoadImpact-ID")
