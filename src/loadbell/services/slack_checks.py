"""What is checked with Slack before a ``slack_app`` channel is saved.

``validate`` cannot do I/O, so two rules of seed 003 live here:

- **Targets must be public channels, each listed once.** When a request adds targets (or
  saves again targets the install's check refused), the level's targets are looked up in
  the workspace with the effective bot token (own or inherited): IDs with
  ``conversations.info``, names with ``conversations.list`` (``conversations.info`` takes
  IDs only). Private channels, DMs, archived and unknown channels, and a name and an ID of
  the same channel, are refused with a 422 naming each. Without a token there is nothing
  to ask yet: the install callback checks the targets then, and stores what Slack refused
  as ``target_problems`` (see channels/slack_app.py) until the targets are saved again.
- **Install data comes only from the install flow.** ``bot_token``, ``workspace``,
  ``team_id`` and ``api_base_url`` cannot be typed in, changed or cleared through the
  channels API, nor can ``target_problems``; sending back what GET showed (the token
  masked) is fine.

:func:`before_update` and :func:`before_override` run before the edge opens its write
transaction (they read on a connection of their own, closed before Slack is called): a
Slack call may take seconds, and SQLite's write lock must not wait on it. The services
still do their own checks after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.channels.registry import get_kind
from loadbell.channels.slack_api import Conversation, SlackClient, SlackError, SlackUnreachable
from loadbell.channels.slack_app import (
    CHECK_KEY,
    DEFAULT_API_BASE,
    INSTALL_KEYS,
    parse_targets,
    refused_targets,
)
from loadbell.domain.inheritance import drop_empty
from loadbell.security.secretbox import SecretBox
from loadbell.services import access as lookups
from loadbell.services.access import Principal
from loadbell.services.channel_config import keep_masked, kind_own, mask_value
from loadbell.services.channel_view import as_seen_by, override_of
from loadbell.services.errors import Conflict, NotConfigured, ServiceError, UpstreamFailed, invalid
from loadbell.store.channels import OverrideRow, channel_from_row
from loadbell.values import ConfigError

KIND = "slack_app"
_INSTALL_FLOW = (
    "comes from the Slack install flow: set it up with GET /api/v1/slack/install"
    "?channel_id=...[&project_id=...] and remove it with DELETE on the same URL"
)


def refuse_install_data(
    kind: str, submitted: Mapping[str, Any] | None, own: Mapping[str, Any], *, replacing: bool
) -> None:
    """422 when ``submitted`` would set, change or clear install data at this level.
    ``replacing``: the request replaces the level's config (PUT of an override), so leaving
    a key out would drop it."""
    if kind != KIND or submitted is None:
        return
    for key in INSTALL_KEYS:
        before, present = own.get(key), key in submitted
        value = submitted.get(key)
        if before in (None, ""):
            if present and value not in (None, ""):
                raise invalid(f"config.{key}", _INSTALL_FLOW)
        elif not present and replacing:
            raise invalid(
                f"config.{key}",
                "this request replaces the project's override and would drop its own Slack "
                "install; send back the override values GET /channels/{id}/effective?"
                "project_id=... shows (the token masked), or remove the install with "
                "DELETE /api/v1/slack/install?channel_id=...&project_id=...",
            )
        elif present and value not in (before, mask_value(key, before)):
            raise invalid(f"config.{key}", _INSTALL_FLOW)
    if CHECK_KEY in submitted and submitted[CHECK_KEY] != own.get(CHECK_KEY):
        raise invalid(
            f"config.{CHECK_KEY}",
            "is written by loadbell when it checks the targets with Slack; fix "
            "config.targets instead (saving them checks them again)",
        )


def settle_check(
    kind: str,
    submitted: Mapping[str, Any] | None,
    own: Mapping[str, Any],
    values: dict[str, Any],
) -> dict[str, Any]:
    """The level's ``target_problems`` after a save: gone when the request saved targets
    (checked again before the save), else kept as stored. ``values`` are the level's
    values about to be written; ``own`` what the level had."""
    if kind != KIND:
        return values
    out = {k: v for k, v in values.items() if k != CHECK_KEY}
    if (submitted is None or "targets" not in submitted) and own.get(CHECK_KEY):
        out[CHECK_KEY] = own[CHECK_KEY]
    return out


async def before_update(
    reader: AsyncEngine,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    submitted: Mapping[str, Any] | None,
) -> None:
    """PATCH /channels/{id}: refuse install-data edits and non-public new targets."""
    if submitted is None:
        return
    async with reader.connect() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        if row.kind != KIND:
            return
        principal.require_manage(row.organization_id)
        channel = channel_from_row(row, box)
    refuse_install_data(KIND, submitted, channel.config, replacing=False)
    kind = get_kind(KIND)
    merged = {**channel.config, **keep_masked(kind, channel.config, dict(submitted))}
    try:
        # The kind's own keys: those every kind takes (auto_disable, noise control) are
        # checked by the service (channel_config.validated_config).
        after = kind.validate(kind_own(merged))
    except ConfigError:
        return  # the service reports it
    if "targets" in submitted:
        await _check_new_targets(after, after.get("targets"), channel.config.get("targets"))


async def before_override(
    reader: AsyncEngine,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    project_id: int,
    submitted: Mapping[str, Any],
) -> None:
    """PUT /channels/{id}/overrides/{project_id}: the same, against the effective config
    the project will have (its own install, or the organization's)."""
    async with reader.connect() as conn:
        row = await lookups.channel(conn, principal, channel_id)
        if row.kind != KIND or row.project_id is not None:
            return
        principal.require_manage(row.organization_id, "change channel settings")
        project = await lookups.project(conn, principal, project_id)
        if project.organization_id != row.organization_id:
            return
        channel = channel_from_row(row, box)
        before = await override_of(conn, box, channel, project_id)
    own = before.config if before else {}
    refuse_install_data(KIND, submitted, own, replacing=True)
    values = drop_empty(keep_masked(get_kind(KIND), own, dict(submitted)))
    after = as_seen_by(channel, OverrideRow(enabled=None, config=values), project_id).config
    await _check_new_targets(after, values.get("targets"), own.get("targets"))


async def _check_new_targets(config: Mapping[str, Any], targets: Any, before: Any) -> None:
    """Check the level's targets (its own value, not inherited ones) with the bot token
    ``config`` (the level's effective config) will use, when this request adds one or
    saves again one the install's check refused. All of them are looked up, so that a
    name and the ID of the same channel are caught."""
    try:
        old = set(parse_targets(before))
        listed = parse_targets(targets)
    except ConfigError:
        return  # the service reports it
    refused = set(refused_targets(config))
    if not config.get("bot_token") or not any(t not in old or t in refused for t in listed):
        return
    problems = await target_problems(config, listed)
    if problems:
        raise invalid("config.targets", "; ".join(problems.values()))


async def target_problems(config: Mapping[str, Any], targets: list[str]) -> dict[str, str]:
    """One sentence per target the config's bot may not post to, or that names the same
    channel as an earlier target ({} when all are distinct public channels). Raises
    a ServiceError when Slack cannot answer (down, token revoked, rate-limited)."""
    workspace = config.get("workspace") or "the workspace"
    base = str(config.get("api_base_url") or DEFAULT_API_BASE)
    token = str(config["bot_token"])
    problems: dict[str, str] = {}
    seen: dict[str, str] = {}  # channel ID -> the target that named it first
    try:
        async with SlackClient(base) as slack:
            by_name: dict[str, Conversation] | None = None
            for target in targets:
                found: Conversation | None
                if target.startswith("#"):
                    if by_name is None:
                        by_name = {c.name: c for c in await slack.public_channels(token)}
                    found = by_name.get(target[1:])
                else:
                    try:
                        found = await slack.conversation(token, target)
                    except SlackError as exc:
                        # With channels:read only, Slack hides private channels
                        # (channel_not_found), or asks for groups:read when the bot is in one.
                        if exc.error == "missing_scope":
                            problems[target] = _PRIVATE.format(target=target)
                            continue
                        if exc.error != "channel_not_found":
                            raise
                        found = None
                problem = _problem(target, found, workspace)
                if problem is None and found is not None and found.id in seen:
                    problem = (
                        f"{target} is the same channel as {seen[found.id]}; list it once "
                        "(each target gets its own message)"
                    )
                if problem:
                    problems[target] = problem
                elif found is not None:
                    seen[found.id] = target
    except SlackError as exc:
        raise _slack_failed(exc) from None
    except SlackUnreachable as exc:
        raise UpstreamFailed(
            f"could not reach Slack to check config.targets ({exc}); try again",
            "config.targets",
            code="slack_unreachable",
        ) from None
    return problems


_PRIVATE = "{target} is a private channel or a conversation; use a public channel"


def _problem(target: str, found: Conversation | None, workspace: str) -> str | None:
    if found is None:
        return (
            f"{target} is not a public channel of {workspace} (it does not exist, or it is "
            "private: the Slack app posts to public channels only)"
        )
    if not found.is_public_channel:
        return _PRIVATE.format(target=target)
    if found.is_archived:
        return f"{target} is archived; unarchive it in Slack or pick another channel"
    return None


def _slack_failed(exc: SlackError) -> ServiceError:
    if exc.error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
        return Conflict(
            f"Slack no longer accepts the bot token ({exc.error}): the app was probably "
            "uninstalled. Set up the Slack integration again, then save the targets",
            "config.targets",
            code="slack_install_broken",
        )
    if exc.error == "missing_scope":
        return Conflict(
            "the installed Slack app lacks the channels:read scope needed to check targets; "
            "set up the Slack integration again",
            "config.targets",
            code="slack_install_broken",
        )
    if exc.error == "ratelimited":
        wait = f" in {exc.retry_after:g} s" if exc.retry_after is not None else " shortly"
        return NotConfigured(
            f"Slack is rate-limiting the channel check; try again{wait}",
            "config.targets",
            code="slack_rate_limited",
        )
    return UpstreamFailed(
        f"Slack refused the channel check ({exc.method}: {exc.error}); try again",
        "config.targets",
        code="slack_error",
    )
