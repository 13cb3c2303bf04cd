"""Fake chat services: real HTTP servers on 127.0.0.1 that answer like Slack, Discord,
Teams Workflows, HipChat and Mattermost/Rocket.Chat incoming webhooks do, per their
public docs. Use them to test a set-up without reaching the real services::

    async with FakeSlackWebhook() as slack:
        url = slack.webhook_url()           # give this to a `slack` channel
        slack.then(Reply(429, "rate_limited", {"Retry-After": "1"}))  # next reply scripted
        ...
        [message] = await slack.wait_for(1)  # the requests, as received

Each fake checks what the service checks (required fields, Block Kit and embed limits,
the Teams envelope) and answers with the service's own status and error body. Replies
queued with ``then`` are sent first, whatever the request; ``accepted`` holds the JSON
bodies the fake took as valid. Behaviours the docs leave open are marked as assumptions.
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

from loadbell.testing.receiver import Received, RecordingReceiver


@dataclass(frozen=True)
class Reply:
    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"

    @classmethod
    def json(cls, status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, orjson.dumps(body).decode(), headers or {}, "application/json")


class FakeService:
    """A real server answering webhook posts; subclasses decide each reply in ``answer``."""

    def __init__(self) -> None:
        self.receiver = RecordingReceiver(handler=self._handle)
        self.script: deque[Reply] = deque()
        self.accepted: list[Any] = []
        self.replies: list[Reply] = []

    @property
    def base_url(self) -> str:
        return self.receiver.url

    @property
    def requests(self) -> list[Received]:
        return self.receiver.requests

    def then(self, *replies: Reply) -> None:
        """Send these replies, in order, to the next requests (before any checking)."""
        self.script.extend(replies)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        return await self.receiver.wait_for(count, timeout)

    async def __aenter__(self) -> Self:
        await self.receiver.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.receiver.stop()

    def _handle(self, request: Received) -> web.Response:
        reply = self.script.popleft() if self.script else self._checked(request)
        self.replies.append(reply)
        body = reply.body if reply.status not in (204, 304) else None
        return web.Response(
            status=reply.status,
            text=body,
            headers=dict(reply.headers),
            content_type=reply.content_type if body is not None else None,
        )

    def _checked(self, request: Received) -> Reply:
        if request.method != "POST":
            return Reply(405, "method not allowed")
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return self.not_json()
        reply = self.answer(request, payload)
        if 200 <= reply.status < 300:
            self.accepted.append(payload)
        return reply

    def not_json(self) -> Reply:
        return Reply(400, "invalid_payload")

    def answer(self, request: Received, payload: Any) -> Reply:
        raise NotImplementedError


# -- Slack -----------------------------------------------------------------------------


def slack_problems(payload: Any) -> list[str]:
    """What Slack's Block Kit validation would refuse, as ``invalid_blocks`` details."""
    if not isinstance(payload, Mapping):
        return ["payload must be an object"]
    blocks = payload.get("blocks") or []
    problems: list[str] = []
    if len(blocks) > 50:
        problems.append("no more than 50 items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        kind = block.get("type")
        if kind == "header" and len(block.get("text", {}).get("text", "")) > 150:
            problems.append(f"must be less than 151 characters [json-pointer:{where}/text/text]")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"must provide text or fields [json-pointer:{where}]")
            if len(block.get("text", {}).get("text", "")) > 3000:
                problems.append(
                    f"must be less than 3001 characters [json-pointer:{where}/text/text]"
                )
            fields = block.get("fields", [])
            if len(fields) > 10:
                problems.append(f"no more than 10 items allowed [json-pointer:{where}/fields]")
            for j, f in enumerate(fields):
                if len(f.get("text", "")) > 2000:
                    problems.append(
                        f"must be less than 2001 characters [json-pointer:{where}/fields/{j}/text]"
                    )
        if kind == "context" and len(block.get("elements", [])) > 10:
            problems.append(f"no more than 10 items allowed [json-pointer:{where}/elements]")
        if kind == "actions":
            for j, el in enumerate(block.get("elements", [])):
                if len(el.get("text", {}).get("text", "")) > 75:
                    problems.append(
                        f"must be less than 76 characters "
                        f"[json-pointer:{where}/elements/{j}/text/text]"
                    )
    return problems


class FakeSlackWebhook(FakeService):
    """Slack incoming webhooks: 200 ``ok``; plain-text error codes.

    Unknown webhook paths answer 404 ``no_service`` (assumption: Slack documents the code,
    not its status). Script a rate limit with ``then(FakeSlackWebhook.rate_limited(1))``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hooks: set[str] = set()

    @staticmethod
    def rate_limited(retry_after: int) -> Reply:
        return Reply(429, "rate_limited", {"Retry-After": str(retry_after)})

    def webhook_url(self) -> str:
        path = f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/"
        path += secrets.token_urlsafe(18)
        self.hooks.add(path)
        return self.base_url + path

    def answer(self, request: Received, payload: Any) -> Reply:
        path = request.path.split("?", 1)[0]
        if path not in self.hooks:
            return Reply(404, "no_service")
        if not isinstance(payload, Mapping) or not (payload.get("text") or payload.get("blocks")):
            return Reply(400, "no_text")
        problems = slack_problems(payload)
        if problems:
            return Reply(400, "invalid_blocks\n" + "\n".join(problems))
        return Reply(200, "ok")


# -- Discord ---------------------------------------------------------------------------


def discord_problems(payload: Any) -> dict[str, Any]:
    """Discord's ``errors`` object for an invalid form body (empty when valid)."""
    errors: dict[str, Any] = {}

    def bad(path: str, code: str, message: str) -> None:
        errors[path] = {"_errors": [{"code": code, "message": message}]}

    if not isinstance(payload, Mapping):
        bad("_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return errors
    embeds = payload.get("embeds") or []
    if not (payload.get("content") or embeds):
        bad("_root", "MESSAGE_EMPTY", "Cannot send an empty message")
    if len(payload.get("content") or "") > 2000:
        bad("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    if len(embeds) > 10:
        bad("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, e in enumerate(embeds):
        limits = {"title": 256, "description": 4096}
        for key, limit in limits.items():
            total += len(e.get(key, ""))
            if len(e.get(key, "")) > limit:
                bad(f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer.")
        if not isinstance(e.get("color", 0), int):
            bad(f"embeds.{i}.color", "NUMBER_TYPE_COERCE", "Value is not int.")
        fields = e.get("fields", [])
        if len(fields) > 25:
            bad(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            total += len(f.get("name", "")) + len(f.get("value", ""))
            if not f.get("name") or not f.get("value"):
                bad(f"embeds.{i}.fields.{j}", "BASE_TYPE_REQUIRED", "This field is required")
            if len(f.get("name", "")) > 256 or len(f.get("value", "")) > 1024:
                bad(f"embeds.{i}.fields.{j}", "BASE_TYPE_MAX_LENGTH", "Too long.")
        total += len(e.get("footer", {}).get("text", ""))
    if total > 6000:
        bad("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    return errors


class FakeDiscord(FakeService):
    """Discord webhooks: 204 (200 and the message with ``?wait=true``); JSON errors;
    unknown webhooks 404 ``Unknown Webhook`` (code 10015)."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: set[str] = set()

    def webhook_url(self) -> str:
        path = f"/api/webhooks/{secrets.randbelow(10**18)}/{secrets.token_urlsafe(48)}"
        self.hooks.add(path)
        return self.base_url + path

    @staticmethod
    def rate_limited(retry_after: float, is_global: bool = False) -> Reply:
        """A 429 as Discord sends it: the exact wait in the body, rounded up in headers."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after}
        return Reply.json(
            429,
            {**body, "global": is_global},
            {
                "Retry-After": str(math.ceil(retry_after)),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Scope": "global" if is_global else "user",
            },
        )

    def not_json(self) -> Reply:
        return Reply.json(400, {"message": "Cannot send an empty message", "code": 50006})

    def answer(self, request: Received, payload: Any) -> Reply:
        path, _, query = request.path.partition("?")
        if path not in self.hooks:
            return Reply.json(404, {"message": "Unknown Webhook", "code": 10015})
        errors = discord_problems(payload)
        if errors:
            return Reply.json(
                400, {"message": "Invalid Form Body", "code": 50035, "errors": errors}
            )
        if "wait=true" in query:
            return Reply.json(200, {"id": str(secrets.randbelow(10**18)), "type": 0, **payload})
        return Reply(204)


# -- Microsoft Teams -------------------------------------------------------------------

TEAMS_THROTTLED = "Microsoft Teams endpoint returned HTTP error 429"


class FakeTeams(FakeService):
    """A Teams Workflows webhook: 202 with an empty body for any JSON, as the real trigger
    does. Like the real flow, a body without the message envelope still gets 202 but fails
    *inside* the flow: such failures land in ``flow_failures`` (the flow's run history)."""

    def __init__(self) -> None:
        super().__init__()
        self.flow_failures: list[str] = []

    def webhook_url(self) -> str:
        return f"{self.base_url}/workflows/{secrets.token_hex(16)}/triggers/manual/paths/invoke"

    @staticmethod
    def throttled() -> Reply:
        """A legacy connector's throttling reply: HTTP 200, the 429 inside the body."""
        return Reply(200, TEAMS_THROTTLED)

    def not_json(self) -> Reply:
        error = {"code": "InvalidRequestContent", "message": "The request content is not valid"}
        return Reply.json(400, {"error": error})

    def answer(self, request: Received, payload: Any) -> Reply:
        problem = teams_problem(payload)
        if problem:
            self.flow_failures.append(problem)
        return Reply(202, "")


def teams_problem(payload: Any) -> str | None:
    """Why the default "post card" flow would fail on ``payload`` (None when it would not)."""
    if not isinstance(payload, Mapping) or payload.get("type") != "message":
        return "type must be 'message'"
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "attachments is of type 'Null'. The result must be a valid array."
    for a in attachments:
        if a.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return "contentType must be application/vnd.microsoft.card.adaptive"
        card = a.get("content") or {}
        if card.get("type") != "AdaptiveCard":
            return "Property 'type' must be 'AdaptiveCard'"
        if not card.get("version"):
            return "Property 'version' is required"
    return None


# -- HipChat ---------------------------------------------------------------------------


class FakeHipChat(FakeService):
    """HipChat API v2 "send room notification": 204; JSON errors; needs the room token
    (``?auth_token=`` or ``Authorization: Bearer``)."""

    COLORS = frozenset({"yellow", "green", "red", "purple", "gray", "random"})

    def __init__(self, token: str = "room-token") -> None:
        super().__init__()
        self.token = token

    def room_url(self, room: str = "ops", with_token: bool = True) -> str:
        query = f"?auth_token={self.token}" if with_token else ""
        return f"{self.base_url}/v2/room/{room}/notification{query}"

    @staticmethod
    def error(status: int, message: str, kind: str) -> Reply:
        return Reply.json(status, {"error": {"code": status, "message": message, "type": kind}})

    def not_json(self) -> Reply:
        return self.error(400, "The request body cannot be parsed as valid JSON", "Bad Request")

    def answer(self, request: Received, payload: Any) -> Reply:
        query = request.path.partition("?")[2]
        bearer = request.header("Authorization") or ""
        if f"auth_token={self.token}" not in query and bearer != f"Bearer {self.token}":
            return self.error(401, "Authenticated requests only.", "Unauthorized")
        message = payload.get("message") if isinstance(payload, Mapping) else None
        if not isinstance(message, str) or not 1 <= len(message) <= 10_000:
            return self.error(400, "Message length must be between 1 and 10000", "Bad Request")
        if payload.get("color", "yellow") not in self.COLORS:
            return self.error(400, "Invalid color", "Bad Request")
        if payload.get("message_format", "html") not in ("html", "text"):
            return self.error(400, "Invalid message_format", "Bad Request")
        return Reply(204)


# -- Mattermost and Rocket.Chat --------------------------------------------------------


class FakeMattermost(FakeService):
    """Mattermost incoming webhooks (200 ``ok``) or, with ``rocketchat=True``, Rocket.Chat's
    (200 ``{"success": true}``). Both read ``text`` and ``attachments``; ``blocks`` is
    ignored, which the fake records in ``ignored_keys``."""

    KNOWN = frozenset(
        {"text", "username", "icon_url", "icon_emoji", "channel", "props", "attachments",
         "type", "priority", "alias", "avatar", "emoji", "roomId", "msg"}
    )  # fmt: skip

    def __init__(self, rocketchat: bool = False) -> None:
        super().__init__()
        self.rocketchat = rocketchat
        self.ignored_keys: list[str] = []

    def webhook_url(self) -> str:
        return f"{self.base_url}/hooks/{secrets.token_hex(13)}"

    def _error(self, message: str) -> Reply:
        if self.rocketchat:
            return Reply.json(400, {"success": False, "error": message})
        return Reply.json(
            400,
            {"id": "web.incoming_webhook.text.app_error", "message": message, "status_code": 400},
        )

    def not_json(self) -> Reply:
        return self._error("Unable to parse incoming data")

    def answer(self, request: Received, payload: Any) -> Reply:
        if not isinstance(payload, Mapping):
            return self._error("Unable to parse incoming data")
        self.ignored_keys += [k for k in payload if k not in self.KNOWN]
        if not (payload.get("text") or payload.get("attachments")):
            return self._error("No text specified.")
        if self.rocketchat:
            return Reply.json(200, {"success": True})
        return Reply(200, "ok")
