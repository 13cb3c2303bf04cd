"""The Slack Web API calls that are not deliveries: the OAuth v2 token exchange and the
channel checks behind "target channels must be public".

Messages themselves (``chat.postMessage``) are deliveries: the ``slack_app`` kind renders
them and the worker sends them through the one sender, with retries and the attempt log.

Slack answers almost everything with HTTP 200 and ``{"ok": false, "error": "<code>"}``;
this client turns that into :class:`SlackError` carrying the code. A 429 is
``SlackError("ratelimited")`` with ``retry_after`` (seconds). Anything that is not a
Slack answer at all (connection refused, timeout, HTML from a proxy) is
:class:`SlackUnreachable`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from loadbell.values import parse_retry_after

TIMEOUT = 10.0  # seconds per call: these run while a person waits for a page
LIST_PAGE = 200  # channels per conversations.list page (Slack suggests at most 200)
MAX_LIST_PAGES = 50  # 10,000 public channels; larger workspaces should use channel IDs


class SlackError(Exception):
    """Slack answered ``ok: false``. ``error`` is its code: ``invalid_auth``, ..."""

    def __init__(self, method: str, error: str, retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error
        self.retry_after = retry_after


class SlackUnreachable(Exception):
    """No Slack answer: the network failed, the call timed out, or the reply was not JSON."""


@dataclass(frozen=True)
class Installation:
    """What ``oauth.v2.access`` returns for a bot install."""

    bot_token: str
    team_id: str
    team_name: str
    bot_user_id: str | None
    app_id: str | None
    scope: str


@dataclass(frozen=True)
class Conversation:
    """The fields of Slack's conversation object that decide whether we may post there."""

    id: str
    name: str
    is_private: bool
    is_archived: bool
    is_im: bool
    is_mpim: bool

    @property
    def is_public_channel(self) -> bool:
        return not (self.is_private or self.is_im or self.is_mpim)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Conversation:
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name") or ""),
            # Legacy private channels report is_group instead of is_private.
            is_private=bool(data.get("is_private") or data.get("is_group")),
            is_archived=bool(data.get("is_archived")),
            is_im=bool(data.get("is_im")),
            is_mpim=bool(data.get("is_mpim")),
        )


class SlackClient:
    """``async with SlackClient(base_url) as slack: await slack.conversation(token, "C1")``."""

    def __init__(self, base_url: str, *, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SlackClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def oauth_access(
        self, *, client_id: str, client_secret: str, code: str, redirect_uri: str
    ) -> Installation:
        """Exchange the callback's ``code`` for a bot token. The client credentials go in
        HTTP Basic auth, which Slack prefers to form fields; ``redirect_uri`` must be the
        one the authorize URL carried."""
        data = await self._call(
            "oauth.v2.access",
            form={"code": code, "redirect_uri": redirect_uri},
            basic=(client_id, client_secret),
        )
        team = data.get("team") or {}
        token = data.get("access_token")
        if data.get("token_type") != "bot" or not isinstance(token, str) or not team.get("id"):
            raise SlackError("oauth.v2.access", "no_bot_token")
        return Installation(
            bot_token=token,
            team_id=str(team["id"]),
            team_name=str(team.get("name") or team["id"]),
            bot_user_id=data.get("bot_user_id"),
            app_id=data.get("app_id"),
            scope=str(data.get("scope") or ""),
        )

    async def conversation(self, token: str, channel_id: str) -> Conversation:
        """``conversations.info`` for one channel ID (it does not take names)."""
        data = await self._call("conversations.info", token=token, params={"channel": channel_id})
        return Conversation.from_api(data.get("channel") or {})

    async def public_channels(self, token: str) -> list[Conversation]:
        """Every public channel of the workspace, archived ones included
        (``conversations.list``, following ``next_cursor``)."""
        found: list[Conversation] = []
        cursor = ""
        for _ in range(MAX_LIST_PAGES):
            params = {"types": "public_channel", "limit": str(LIST_PAGE)}
            if cursor:
                params["cursor"] = cursor
            data = await self._call("conversations.list", token=token, params=params)
            found += [Conversation.from_api(c) for c in data.get("channels") or []]
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
        return found

    async def _call(
        self,
        method: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        basic: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("use SlackClient as 'async with SlackClient(...) as slack'")
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif basic:
            pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        url = f"{self.base_url}/{method}"
        try:
            async with self._session.request(
                "POST" if form is not None else "GET",
                url,
                params=params,
                data=form,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                status = resp.status
        except TimeoutError:
            raise SlackUnreachable(f"{method}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise SlackUnreachable(f"{method}: {exc.__class__.__name__}: {exc}") from None
        if status == 429:
            raise SlackError(method, "ratelimited", retry_after)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise SlackUnreachable(f"{method}: HTTP {status} without a JSON body") from None
        if not isinstance(data, dict):
            raise SlackUnreachable(f"{method}: HTTP {status} with an unexpected body")
        if not data.get("ok"):
            raise SlackError(method, str(data.get("error") or f"http_{status}"))
        return data
