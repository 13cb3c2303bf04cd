"""A fake Slack: the OAuth v2 authorize page and the Web API methods loadbell calls, as a
real aiohttp server on 127.0.0.1, written to Slack's public documentation.

    async with FakeSlackApi() as slack:
        settings = Settings(**slack.settings(), ...)   # point loadbell at it
        general = slack.add_channel("load-tests")
        ...
        assert slack.messages[0].channel_id == general.id

What it does the way Slack does (https://api.slack.com/methods, /authentication/oauth-v2):

- ``GET /oauth/v2/authorize`` plays the person clicking "Allow": it redirects to
  ``redirect_uri?code=...&state=...`` (``?error=access_denied&state=...`` after
  :meth:`FakeSlackApi.decline_next`). An unknown ``client_id``, a missing scope or a
  ``redirect_uri`` the app has not registered gets an error page, not a redirect.
- ``POST /api/oauth.v2.access``: form-encoded ``code`` (+ ``redirect_uri``), client
  credentials by HTTP Basic auth or form fields. Codes are single-use and expire in 10
  minutes. Errors: ``invalid_client_id``, ``bad_client_secret``, ``invalid_code``,
  ``bad_redirect_uri``.
- ``conversations.info``, ``conversations.list`` and ``chat.postMessage`` need a bot token
  in ``Authorization: Bearer`` (or a ``token`` form field): none is ``not_authed``, an
  unknown or revoked one ``invalid_auth``, a missing scope ``missing_scope``.
- Private channels are invisible to a bot that is not in them (``channel_not_found``);
  posting to a public channel the bot is not in needs ``chat:write.public``
  (``not_in_channel``); archived channels answer ``is_archived``; a message needs ``text``
  or ``blocks`` (``no_text``); blocks are checked against Block Kit's limits
  (``invalid_blocks``); a JSON body that does not parse is ``invalid_json``.
- Errors are HTTP 200 with ``{"ok": false, "error": ...}``; only rate limiting
  (:meth:`FakeSlackApi.rate_limit_next`) is HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web

from loadbell.testing.receiver import start_site

CODE_TTL = 600.0  # seconds, as Slack's OAuth codes
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_TEXT = 40_000  # Slack truncates longer text (with a warning)
KNOWN_SCOPES = frozenset(
    {
        "chat:write",
        "chat:write.public",
        "channels:read",
        "groups:read",
        "im:read",
        "mpim:read",
        "incoming-webhook",
        "users:read",
    }
)


@dataclass
class FakeChannel:
    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    members: set[str] = field(default_factory=set)  # bot user IDs in the channel

    def as_api(self, bot_user_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": self.name == "general",
            "is_member": bot_user_id in self.members,
            "is_ext_shared": False,
            "created": 1_700_000_000,
        }


@dataclass
class FakeTeam:
    id: str
    name: str
    bot_user_id: str
    channels: dict[str, FakeChannel] = field(default_factory=dict)


@dataclass
class Grant:
    """An issued bot token."""

    token: str
    team_id: str
    scopes: frozenset[str]
    revoked: bool = False


@dataclass
class PostedMessage:
    team_id: str
    channel_id: str
    channel: str  # as the caller wrote it: an ID or a #name
    token: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    body: dict[str, Any]
    ts: str


@dataclass
class _Code:
    client_id: str
    team_id: str
    scopes: frozenset[str]
    redirect_uri: str | None
    expires_at: float
    used: bool = False


class FakeSlackApi:
    def __init__(
        self,
        *,
        client_id: str = "1111.2222",
        client_secret: str = "fake-client-secret",
        redirect_urls: list[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        # The app's registered Redirect URLs; None accepts any http(s) URL.
        self.redirect_urls = redirect_urls
        self.host = host
        self.port = 0
        self.teams: dict[str, FakeTeam] = {}
        self.grants: dict[str, Grant] = {}
        self.messages: list[PostedMessage] = []
        self.calls: list[tuple[str, dict[str, str]]] = []  # (method, non-secret params)
        self.install_team: str | None = None  # the workspace the next "Allow" picks
        self._codes: dict[str, _Code] = {}
        self._decline = False
        self._rate_limited: list[float] = []  # Retry-After seconds for the next posts
        self._scripted: dict[str, list[str]] = {}  # method -> error codes to answer next
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.add_team("T0FAKE001", "Fake Workspace")

    # -- set-up ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/oauth/v2/authorize"

    def settings(self) -> dict[str, Any]:
        """loadbell Settings fields that point at this fake."""
        return {
            "slack_api_base_url": self.api_url,
            "slack_oauth_authorize_url": self.authorize_url,
            "slack_client_id": self.client_id,
            "slack_client_secret": self.client_secret,
        }

    def add_team(self, team_id: str, name: str) -> FakeTeam:
        team = FakeTeam(team_id, name, bot_user_id=f"U0BOT{len(self.teams) + 1:04d}")
        self.teams[team_id] = team
        if self.install_team is None:
            self.install_team = team_id
        return team

    def add_channel(
        self,
        name: str,
        *,
        private: bool = False,
        archived: bool = False,
        bot_member: bool = False,
        team_id: str | None = None,
    ) -> FakeChannel:
        team = self.teams[team_id or next(iter(self.teams))]
        channel = FakeChannel(f"C{next(self._ids):08d}", name, private, archived)
        if bot_member:
            channel.members.add(team.bot_user_id)
        team.channels[channel.id] = channel
        return channel

    def decline_next(self) -> None:
        """The next authorize visit clicks "Cancel" (``error=access_denied``)."""
        self._decline = True

    def rate_limit_next(self, count: int = 1, retry_after: float = 1.0) -> None:
        """The next ``count`` chat.postMessage calls get HTTP 429 + Retry-After."""
        self._rate_limited += [retry_after] * count

    def fail_next(self, method: str, error: str) -> None:
        """The next call of ``method`` answers ``{"ok": false, "error": error}``."""
        self._scripted.setdefault(method, []).append(error)

    def revoke(self, token: str) -> None:
        self.grants[token].revoked = True

    def tokens_of(self, team_id: str) -> list[str]:
        return [g.token for g in self.grants.values() if g.team_id == team_id]

    async def approve(self, authorize_url: str) -> str:
        """Visit ``authorize_url`` as the browser would and return where Slack redirects
        (the callback URL with code and state). Raises AssertionError on an error page."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(authorize_url, allow_redirects=False) as resp,
        ):
            if resp.status != 302:
                raise AssertionError(f"authorize page answered {resp.status}: {await resp.text()}")
            return resp.headers["Location"]

    # -- server ------------------------------------------------------------------------

    async def start(self) -> FakeSlackApi:
        app = web.Application()
        app.router.add_get("/oauth/v2/authorize", self._authorize)
        app.router.add_route("*", "/api/{method}", self._api)
        self._runner, self.port = await start_site(app, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlackApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- OAuth -------------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("client_id") != self.client_id:
            return _error_page("invalid_client_id")
        scopes = frozenset(s for s in q.get("scope", "").split(",") if s)
        if not scopes or not scopes <= KNOWN_SCOPES:
            return _error_page("invalid_scope")
        redirect_uri = q.get("redirect_uri")
        target = redirect_uri or (self.redirect_urls[0] if self.redirect_urls else None)
        if target is None or not self._registered(target):
            return _error_page("bad_redirect_uri")
        params = {"state": q["state"]} if "state" in q else {}
        if self._decline:
            self._decline = False
            params = {"error": "access_denied", **params}
        else:
            code = f"{next(self._ids)}.{secrets.token_hex(16)}"
            assert self.install_team is not None
            self._codes[code] = _Code(
                self.client_id, self.install_team, scopes, redirect_uri, time.time() + CODE_TTL
            )
            params = {"code": code, **params}
        sep = "&" if "?" in target else "?"
        raise web.HTTPFound(f"{target}{sep}{urlencode(params)}")

    def _registered(self, uri: str) -> bool:
        if not uri.startswith(("http://", "https://")):
            return False
        if self.redirect_urls is None:
            return True
        # Slack accepts a registered URL or a sub-path of one.
        return any(uri == u or uri.startswith(u.rstrip("/") + "/") for u in self.redirect_urls)

    def _oauth_access(self, request: web.Request, args: dict[str, str]) -> dict[str, Any]:
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                pair = base64.b64decode(auth[6:]).decode()
            except ValueError:
                return _fail("invalid_client_id")
            client_id, _, client_secret = pair.partition(":")
        if client_id != self.client_id:
            return _fail("invalid_client_id")
        if client_secret != self.client_secret:
            return _fail("bad_client_secret")
        grant = self._codes.get(args.get("code", ""))
        if grant is None or grant.used or grant.expires_at < time.time():
            return _fail("invalid_code")
        grant.used = True  # single use, even when the rest fails
        if grant.redirect_uri is not None and args.get("redirect_uri") != grant.redirect_uri:
            return _fail("bad_redirect_uri")
        team = self.teams[grant.team_id]
        token = f"xoxb-{team.id}-{secrets.token_hex(12)}"
        self.grants[token] = Grant(token, team.id, grant.scopes)
        return {
            "ok": True,
            "access_token": token,
            "token_type": "bot",
            "scope": ",".join(sorted(grant.scopes)),
            "bot_user_id": team.bot_user_id,
            "app_id": "A0FAKEAPP",
            "team": {"id": team.id, "name": team.name},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": "U0INSTALLER"},
        }

    # -- Web API -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            args, json_body = await _arguments(request)
        except ValueError as exc:
            return _answer(_fail(str(exc)))
        self.calls.append((method, {k: v for k, v in args.items() if k != "client_secret"}))
        scripted = self._scripted.get(method)
        if scripted:
            return _answer(_fail(scripted.pop(0)))
        if method == "oauth.v2.access":
            if request.method != "POST":
                return _answer(_fail("invalid_request"))
            return _answer(self._oauth_access(request, args))
        handlers = {
            "conversations.info": self._conversations_info,
            "conversations.list": self._conversations_list,
            "chat.postMessage": self._post_message,
        }
        handler = handlers.get(method)
        if handler is None:
            return _answer(_fail("unknown_method"))
        token = _bearer(request) or args.get("token")
        if not token:
            return _answer(_fail("not_authed"))
        grant = self.grants.get(token)
        if grant is None or grant.revoked:
            return _answer(_fail("invalid_auth"))
        if method == "chat.postMessage" and self._rate_limited:
            wait = self._rate_limited.pop(0)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": f"{wait:g}"},
            )
        return _answer(handler(grant, args, json_body))

    def _visible(self, grant: Grant, ref: str) -> FakeChannel | None:
        """A channel by ID or (#)name, as the token's bot can see it."""
        team = self.teams[grant.team_id]
        channel = team.channels.get(ref)
        if channel is None:
            name = ref.removeprefix("#")
            channel = next((c for c in team.channels.values() if c.name == name), None)
        if channel is None:
            return None
        if channel.is_private and team.bot_user_id not in channel.members:
            return None
        return channel

    def _conversations_info(self, grant: Grant, args: dict[str, str], body: Any) -> dict[str, Any]:
        channel = self.teams[grant.team_id].channels.get(args.get("channel", ""))
        if channel is not None and channel.is_private:
            channel = self._visible(grant, channel.id)
        if channel is None:  # conversations.info takes IDs only, not names
            return _fail("channel_not_found")
        needed = "groups:read" if channel.is_private else "channels:read"
        if needed not in grant.scopes:
            return _fail("missing_scope", needed=needed)
        return {"ok": True, "channel": channel.as_api(self.teams[grant.team_id].bot_user_id)}

    def _conversations_list(self, grant: Grant, args: dict[str, str], body: Any) -> dict[str, Any]:
        types = set((args.get("types") or "public_channel").split(","))
        if "public_channel" in types and "channels:read" not in grant.scopes:
            return _fail("missing_scope", needed="channels:read")
        if "private_channel" in types and "groups:read" not in grant.scopes:
            return _fail("missing_scope", needed="groups:read")
        try:
            limit = min(max(int(args.get("limit") or 100), 1), 1000)
            start = int(args.get("cursor") or 0)
        except ValueError:
            return _fail("invalid_cursor")
        team = self.teams[grant.team_id]
        wanted = [
            c
            for c in team.channels.values()
            if ("private_channel" if c.is_private else "public_channel") in types
            and (not c.is_private or team.bot_user_id in c.members)
            and not (args.get("exclude_archived") == "true" and c.is_archived)
        ]
        page = wanted[start : start + limit]
        more = start + limit < len(wanted)
        return {
            "ok": True,
            "channels": [c.as_api(team.bot_user_id) for c in page],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _post_message(self, grant: Grant, args: dict[str, str], body: Any) -> dict[str, Any]:
        if "chat:write" not in grant.scopes:
            return _fail("missing_scope", needed="chat:write")
        fields: dict[str, Any] = body if isinstance(body, dict) else dict(args)
        ref = str(fields.get("channel") or "")
        channel = self._visible(grant, ref) if ref else None
        if channel is None:
            return _fail("channel_not_found")
        if channel.is_archived:
            return _fail("is_archived")
        team = self.teams[grant.team_id]
        if team.bot_user_id not in channel.members and "chat:write.public" not in grant.scopes:
            return _fail("not_in_channel")
        blocks = fields.get("blocks")
        if isinstance(blocks, str):  # form-encoded calls send blocks as a JSON string
            try:
                blocks = orjson.loads(blocks)
            except orjson.JSONDecodeError:
                return _fail("invalid_blocks_format")
        text = fields.get("text")
        if not text and not blocks:
            return _fail("no_text")
        if blocks is not None:
            problem = _check_blocks(blocks)
            if problem:
                return _fail("invalid_blocks", errors=[problem])
        ts = f"{time.time():.6f}"
        self.messages.append(
            PostedMessage(team.id, channel.id, ref, grant.token, text, blocks, fields, ts)
        )
        answer: dict[str, Any] = {
            "ok": True,
            "channel": channel.id,
            "ts": ts,
            "message": {"type": "message", "text": text, "blocks": blocks or [], "ts": ts},
        }
        if isinstance(text, str) and len(text) > MAX_TEXT:
            answer["warning"] = "message_truncated"
        return answer


async def _arguments(request: web.Request) -> tuple[dict[str, str], Any]:
    """Query and body arguments; a JSON body is also returned whole. Raises ValueError with
    Slack's error code when the body cannot be read."""
    args: dict[str, str] = dict(request.query)
    json_body: Any = None
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                json_body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                raise ValueError("invalid_json") from None
            if not isinstance(json_body, dict):
                raise ValueError("invalid_json")
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update({k: str(v) for k, v in form.items()})
        else:
            raise ValueError("invalid_form_data")
    return args, json_body


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _check_blocks(blocks: Any) -> str | None:
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return "blocks must be an array of objects"
    if len(blocks) > MAX_BLOCKS:
        return f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"
    for i, block in enumerate(blocks):
        if not isinstance(block.get("type"), str):
            return f"missing required field: type [json-pointer:/blocks/{i}]"
        text = block.get("text")
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            limit = MAX_HEADER_TEXT if block["type"] == "header" else MAX_SECTION_TEXT
            if len(text["text"]) > limit:
                return (
                    f"must be less than {limit + 1} characters [json-pointer:/blocks/{i}/text/text]"
                )
    return None


def _fail(error: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": error, **extra}


def _answer(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, dumps=lambda v: orjson.dumps(v).decode())


def _error_page(error: str) -> web.Response:
    return web.Response(
        status=400,
        content_type="text/html",
        text=f"<html><body><h1>Something went wrong</h1><p>{error}</p></body></html>",
    )
