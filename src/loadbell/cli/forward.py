"""``loadbell forward``: replay deliveries from the log to a local URL, and with
``--follow`` stream new ones, like ``stripe listen --forward-to``.

It talks to a loadbell (local or remote) through its API with a token: it pages the
delivery log (``GET /deliveries``, newest first with its ``before_id`` cursor), asks for
each delivery's request as its channel sends it now (``GET /deliveries/{id}/request``,
owners and admins: it carries a fresh signature) and POSTs that, headers and body
unchanged, to ``--to`` through the one outbound sender (``delivery/sender.py``). Following
polls the first page of the log for ids past the newest one seen.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import click
from yarl import URL

from loadbell.cli.common import run_coroutine
from loadbell.delivery.sender import Sender
from loadbell.domain.durations import DurationError, parse_duration
from loadbell.values import OutboundRequest

# Deliveries loadbell decided not to send: there is no request to forward.
NOT_SENT = frozenset({"skipped", "suppressed"})
PAGE = 500  # the log's largest page
# Following reads back this many ids below the highest seen, for deliveries whose
# transaction committed after one with a higher id (see _follow).
REORDER = 200
TIMEOUT = 10.0  # seconds: each call to loadbell, and each forwarded request


class ForwardError(click.ClickException):
    """A problem the user fixes (a wrong option, a receiver that is not running)."""


@dataclass
class Api:
    """The few calls forward makes, with their errors in the user's words."""

    session: aiohttp.ClientSession
    base: str

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        url = f"{self.base}/api/v1{path}"
        try:
            async with asyncio.timeout(TIMEOUT):
                async with self.session.get(url, params=params) as r:
                    body = await r.json(content_type=None)
                    return r.status, body
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ForwardError(
                f"cannot reach loadbell at --url {self.base} ({exc.__class__.__name__}: {exc}); "
                "check the URL and that the server runs"
            ) from None
        except ValueError:
            raise ForwardError(f"--url {self.base} did not answer JSON; is it loadbell?") from None


def _check_to(value: str) -> str:
    try:
        url = URL(value)
    except ValueError as exc:
        raise click.BadParameter(f"not a URL ({exc})", param_hint="--to") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise click.BadParameter(
            "must be an http:// or https:// URL, such as http://localhost:3000/hook",
            param_hint="--to",
        )
    return value


def _message(body: Any) -> str:
    return str(body.get("message")) if isinstance(body, dict) else str(body)


def _created(item: dict[str, Any]) -> datetime:
    when = datetime.fromisoformat(str(item["created_at"]))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _page(api: Api, channel: int | None, before: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": PAGE}
    if channel is not None:
        params["channel_id"] = channel
    if before is not None:
        params["before_id"] = before
    status, body = await api.get("/deliveries", **params)
    if status == 401:
        raise ForwardError(f"loadbell refused the token: {_message(body)}; check --token")
    if status != 200:
        raise ForwardError(f"GET /deliveries answered {status}: {_message(body)}")
    return dict(body)


async def _newer_than(
    api: Api, channel: int | None, last_id: int, since: datetime | None
) -> list[dict[str, Any]]:
    """Deliveries with an id past ``last_id`` (and created at or after ``since``), oldest
    first, reading newest-first pages until one reaches back past either bound."""
    found: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        page = await _page(api, channel, before)
        for item in page["items"]:
            if item["id"] <= last_id or (since is not None and _created(item) < since):
                return found[::-1]
            found.append(item)
        before = page["next_before_id"]
        if before is None:
            return found[::-1]


class Forwarder:
    def __init__(self, api: Api, sender: Sender, to: str) -> None:
        self.api, self.sender, self.to = api, sender, to

    async def forward(self, item: dict[str, Any]) -> None:
        """Forward one delivery and print one line: id, event, status code."""
        ident, event = item["id"], item["event_type"]
        if item["status"] in NOT_SENT:
            click.echo(f"#{ident} {event}: not forwarded ({item['status']}: never sent)")
            return
        status, body = await self.api.get(f"/deliveries/{ident}/request")
        if status in (401, 403):
            raise ForwardError(f"delivery {ident}: {_message(body)}")
        if status != 200:  # 404 (gone since), 409 (cannot be rendered): say so, go on
            click.echo(f"#{ident} {event}: not forwarded ({_message(body)})")
            return
        request = OutboundRequest(
            url=self.to,
            body=str(body["body"]).encode(),
            headers=dict(body["headers"]),
            method=str(body["method"]),
            mask_url=False,
        )
        outcome = await self.sender.send(request, TIMEOUT)
        if outcome.status_code is None:
            raise ForwardError(
                f"cannot reach --to {self.to}: {outcome.error}; is your server running?"
            )
        took = f"{outcome.duration_ms:.0f} ms"
        click.echo(f"#{ident} {event} -> {outcome.status_code} ({took})")


async def forward(
    *,
    to: str,
    base: str,
    token: str,
    channel: int | None,
    since: timedelta,
    follow: bool,
    poll: float,
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        Sender(allow_private_targets=True) as sender,  # --to is the user's own, local URL
    ):
        api = Api(session, base.rstrip("/"))
        if channel is not None:
            status, body = await api.get(f"/channels/{channel}")
            if status == 404:
                raise ForwardError(
                    f"--channel {channel}: no such channel (unknown, deleted, or in an "
                    "organization this token cannot see)"
                )
            if status != 200:
                raise ForwardError(f"--channel {channel}: {status}: {_message(body)}")
        forwarder = Forwarder(api, sender, to)
        # What the log holds now: following forwards what comes after it.
        there = [item["id"] for item in (await _page(api, channel, None))["items"]]
        cutoff = datetime.now(UTC) - since
        replay = await _newer_than(api, channel, 0, cutoff)
        click.echo(
            f"forwarding {len(replay)} deliveries since {cutoff:%Y-%m-%d %H:%M:%S} UTC to {to}",
            err=True,
        )
        for item in replay:
            await forwarder.forward(item)
        if not follow:
            return
        await _follow(api, forwarder, channel, poll, {*there, *(i["id"] for i in replay)})


async def _follow(
    api: Api, forwarder: Forwarder, channel: int | None, poll: float, known: set[int]
) -> None:
    """Forward deliveries logged after those in ``known`` (already there, or replayed),
    until interrupted.

    Ids are given when a delivery is staged and become visible when its transaction
    commits, so a delivery may appear after one with a higher id. Each poll therefore reads
    back :data:`REORDER` ids below the highest one seen and forwards what it had not seen.
    """
    last = max(known, default=0)
    seen = {i for i in known if i > last - REORDER}
    click.echo("following new deliveries (Ctrl-C to stop)", err=True)
    while True:
        await asyncio.sleep(poll)
        for item in await _newer_than(api, channel, max(last - REORDER, 0), None):
            if item["id"] in seen:
                continue
            await forwarder.forward(item)
            seen.add(item["id"])
            last = max(last, item["id"])
        seen = {i for i in seen if i > last - REORDER}


@click.command("forward")
@click.option(
    "--to",
    required=True,
    envvar="LOADBELL_FORWARD_TO",
    show_envvar=True,
    callback=lambda _ctx, _param, value: _check_to(value),
    help="The local URL to POST each delivery to, e.g. http://localhost:3000/hook.",
)
@click.option(
    "--channel",
    type=click.IntRange(min=1),
    envvar="LOADBELL_FORWARD_CHANNEL",
    show_envvar=True,
    default=None,
    help="Only this channel's deliveries. Default: every channel the token sees.",
)
@click.option(
    "--since",
    default="1h",
    show_default=True,
    envvar="LOADBELL_FORWARD_SINCE",
    show_envvar=True,
    help="Replay deliveries created this long ago or later: 45s, 90m, 12h, 30d (0s: none).",
)
@click.option(
    "--follow",
    is_flag=True,
    envvar="LOADBELL_FORWARD_FOLLOW",
    show_envvar=True,
    help="Keep running and forward new deliveries as they are logged.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    envvar="LOADBELL_FORWARD_POLL",
    show_envvar=True,
    help="With --follow: seconds between reads of the delivery log.",
)
@click.option("--url", envvar="LOADBELL_URL", show_envvar=True, default=None, help="Server URL.")
@click.option(
    "--token",
    envvar="LOADBELL_TOKEN",
    show_envvar=True,
    default=None,
    help="API token of an owner or admin (the requests carry signatures).",
)
def forward_command(
    to: str,
    channel: int | None,
    since: str,
    follow: bool,
    poll: float,
    url: str | None,
    token: str | None,
) -> None:
    """Replay deliveries to a local URL, signed as the channel signs them (--follow: and
    stream new ones)."""
    try:
        window = parse_duration(since, option="--since")
    except DurationError as exc:
        raise click.BadParameter(str(exc).removeprefix("--since: "), param_hint="--since") from None
    if not url:
        raise click.UsageError("give the loadbell server's URL with --url (or LOADBELL_URL)")
    if not token:
        raise click.UsageError("give an API token with --token (or LOADBELL_TOKEN)")
    try:
        run_coroutine(
            forward(
                to=to,
                base=url,
                token=token,
                channel=channel,
                since=window,
                follow=follow,
                poll=poll,
            )
        )
    except KeyboardInterrupt:
        sys.exit(0)
