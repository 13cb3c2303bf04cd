"""``loadbell forward`` against a real server (its in-process worker delivering to a real
receiver) and a second real receiver standing in for the developer's local server: the
replayed and followed requests are the channel's own, re-signed. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from api.support import new_run, set_status
from conftest import Server, SpawnLoadbell, free_port
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


async def _signed_webhook(api: httpx.AsyncClient, url: str) -> int:
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": "signed",
            "config": {
                "url": url,
                "format": "loadimpact",
                "signing_secrets": [SECRET],
                "headers": {"X-Team": "perf"},
            },
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _run(api: httpx.AsyncClient) -> None:
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    await set_status(api, run["id"], 3, result="passed")


def _same_request(original: Received, forwarded: Received) -> None:
    """The forwarded request is the original but for the signature's timestamp."""
    assert forwarded.body == original.body
    fresh = {"webhook-timestamp", "webhook-signature"}
    skip = fresh | {"host", "content-length"}
    mine = {k.lower(): v for k, v in forwarded.headers.items() if k.lower() not in skip}
    theirs = {k.lower(): v for k, v in original.headers.items() if k.lower() not in skip}
    assert mine == theirs
    # A signature the receiver's own Standard Webhooks library accepts.
    Webhook(SECRET).verify(forwarded.body, {k: v for k, v in forwarded.headers.items()})


async def _lines(proc: Any, needle: str, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in proc.stdout if needle in line]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, proc.output()
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_replay_and_follow(
    api: httpx.AsyncClient, app_server: Server, spawn_loadbell: SpawnLoadbell
) -> None:
    """Deliveries of the last hour are replayed oldest first, then new ones follow; each is
    the channel's request (body, headers, id) with a valid fresh signature."""
    async with RecordingReceiver() as real, RecordingReceiver(status=202) as local:
        channel = await _signed_webhook(api, f"{real.url}/hook")
        await _run(api)
        await real.wait_for(2, timeout=30)
        proc = await spawn_loadbell(
            "forward",
            "--to",
            f"{local.url}/hook",
            "--channel",
            str(channel),
            "--since",
            "1h",
            "--follow",
            "--poll",
            "0.2",
            env={"LOADBELL_URL": app_server.url, "LOADBELL_TOKEN": app_server.token},
        )
        replayed = await local.wait_for(2, timeout=30)
        assert [r.header("X-LoadImpact-Event") for r in replayed] == [
            "test.started",
            "test.finished",
        ]
        for original, forwarded in zip(real.requests, replayed, strict=True):
            _same_request(original, forwarded)
        lines = await _lines(proc, "-> 202", 2)
        assert "test.started -> 202" in lines[0] and lines[0].startswith("#")

        await _run(api)  # followed
        await real.wait_for(4, timeout=30)
        followed = (await local.wait_for(4, timeout=30))[2:]
        for original, forwarded in zip(real.requests[2:], followed, strict=True):
            _same_request(original, forwarded)
        await _lines(proc, "-> 202", 4)
        await proc.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "ftp://localhost/x"], "must be an http:// or https:// URL"),  # not http(s)
        (["--to", "http://127.0.0.1:9/", "--since", "1 hour"], "--since"),  # bad duration
        (["--to", "http://127.0.0.1:9/", "--channel", "999"], "--channel 999: no such channel"),
    ],
)
async def test_clear_errors(
    app_server: Server, spawn_loadbell: SpawnLoadbell, args: list[str], expected: str
) -> None:
    """A wrong --to, --since or --channel fails at once with a message naming it."""
    proc = await spawn_loadbell(
        "forward", *args, env={"LOADBELL_URL": app_server.url, "LOADBELL_TOKEN": app_server.token}
    )
    assert await proc.finish() != 0
    assert expected in "".join(proc.stderr), proc.output()


@pytest.mark.slow
async def test_unreachable_to_is_named(
    api: httpx.AsyncClient, app_server: Server, spawn_loadbell: SpawnLoadbell
) -> None:
    """A --to nothing listens on stops the command with 'cannot reach --to'."""
    async with RecordingReceiver() as real:
        await _signed_webhook(api, f"{real.url}/hook")
        await _run(api)
        await real.wait_for(2, timeout=30)
    closed = f"http://127.0.0.1:{free_port()}/hook"
    proc = await spawn_loadbell(
        "forward",
        "--to",
        closed,
        env={"LOADBELL_URL": app_server.url, "LOADBELL_TOKEN": app_server.token},
    )
    assert await proc.finish() == 1
    assert f"cannot reach --to {closed}" in "".join(proc.stderr), proc.output()


@pytest.mark.slow
async def test_follow_only_forwards_what_comes_after(
    api: httpx.AsyncClient, app_server: Server, spawn_loadbell: SpawnLoadbell
) -> None:
    """With --since 0s nothing old is replayed: --follow starts after the newest delivery
    in the log and forwards only the run that comes later."""
    async with RecordingReceiver() as real, RecordingReceiver() as local:
        await _signed_webhook(api, f"{real.url}/hook")
        await _run(api)
        await real.wait_for(2, timeout=30)
        proc = await spawn_loadbell(
            *("forward", "--to", f"{local.url}/hook", "--since", "0s", "--follow"),
            *("--poll", "0.2"),
            env={"LOADBELL_URL": app_server.url, "LOADBELL_TOKEN": app_server.token},
        )
        await proc.wait_for_line("following new deliveries")
        assert "forwarding 0 deliveries" in "".join(proc.stderr)
        await _run(api)
        await real.wait_for(4, timeout=30)
        forwarded = await local.wait_for(2, timeout=30)
        await _lines(proc, "-> 200", 2)
        assert len(local.requests) == 2  # the first run's were not replayed
        for original, copy in zip(real.requests[2:], forwarded, strict=True):
            _same_request(original, copy)
        await proc.stop()
