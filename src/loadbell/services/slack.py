"""Installing the Slack app into a ``slack_app`` channel: Slack's OAuth v2 flow (seed 003).

1. :func:`start_install` (owner/admin) makes a fresh ``state`` and the URL of Slack's
   authorize page.
2. Slack sends the browser back to the callback. A browser redirect cannot carry our
   bearer token, so **the state is the credential**: 256 random bits, stored hashed,
   usable once, for 10 minutes, and bound to the channel, the level (organization, or one
   project's override) and the admin who asked. :func:`finish_install` re-checks that this
   admin may still manage the channel, exchanges the code with ``oauth.v2.access`` and
   stores the bot token encrypted, with the workspace name.
3. :func:`remove_install` removes the install data at that level; a project then falls
   back to the organization's install.

The callback is the one operation here that commits in steps, so it takes the engine
rather than a connection: the state is used up (committed) before Slack is called, and
Slack is never called inside a write transaction (SQLite's write lock must not wait on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from yarl import URL

from loadbell.channels.slack_api import SlackClient, SlackError, SlackUnreachable
from loadbell.channels.slack_app import CHECK_KEY, INSTALL_KEYS, parse_targets
from loadbell.domain.roles import Role
from loadbell.security.secretbox import SecretBox
from loadbell.services import access as lookups
from loadbell.services import slack_checks
from loadbell.services.access import Principal
from loadbell.services.channel_view import seen_by
from loadbell.services.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotConfigured,
    ServiceError,
    UpstreamFailed,
    invalid,
)
from loadbell.settings import Settings
from loadbell.store import slack_installs
from loadbell.store.channels import channel_from_row
from loadbell.store.slack_installs import STATE_TTL, InstallState, StateProblem
from loadbell.store.tables import channels, memberships, projects

# chat:write posts, chat:write.public posts to public channels without an invitation,
# channels:read lets the target check see public channels.
SCOPES = "chat:write,chat:write.public,channels:read"
CALLBACK_PATH = "/api/v1/slack/oauth/callback"

_AGAIN = "start again from loadbell (GET /api/v1/slack/install?channel_id=...)"
_STATE_PROBLEMS: dict[StateProblem, str] = {
    StateProblem.UNKNOWN: f"this install link is not one loadbell issued; {_AGAIN}",
    StateProblem.USED: f"this install link was already used; {_AGAIN}",
    StateProblem.EXPIRED: f"this install link expired after {STATE_TTL / 60:g} minutes; {_AGAIN}",
}
# oauth.v2.access error code -> what went wrong, for the person who clicked "Allow".
_OAUTH_ERRORS: dict[str, str] = {
    "invalid_code": "the code from Slack was already used or has expired",
    "bad_redirect_uri": "the redirect URL differs from the one the app has on file; add "
    "LOADBELL_PUBLIC_URL + /api/v1/slack/oauth/callback to the app's Redirect URLs",
    "invalid_client_id": "LOADBELL_SLACK_CLIENT_ID is not the app's client ID",
    "bad_client_secret": "LOADBELL_SLACK_CLIENT_SECRET is not the app's client secret",
    "oauth_authorization_url_mismatch": "the authorize URL does not match the app's OAuth "
    "version (use Slack's /oauth/v2/authorize)",
}


@dataclass(frozen=True)
class InstallLink:
    authorize_url: str
    expires_in: float  # seconds the link stays usable


@dataclass(frozen=True)
class Installed:
    """What the callback did: the answer for a script, and the page for a browser."""

    answer: dict[str, Any]
    page: str  # the channel's configuration page (seed 003: the browser goes back there)


def _credentials(settings: Settings) -> tuple[str, str]:
    if not settings.slack_client_id or not settings.slack_client_secret:
        raise NotConfigured(
            "this server has no Slack app: set LOADBELL_SLACK_CLIENT_ID and "
            "LOADBELL_SLACK_CLIENT_SECRET (from the app's Basic Information page) and restart",
            code="slack_not_configured",
        )
    return settings.slack_client_id, settings.slack_client_secret


async def _level(
    conn: AsyncConnection, principal: Principal, channel_id: int, project_id: int | None
) -> tuple[Any, int | None]:
    """The channel, and where its install data lives: None for the channel itself (an
    organization channel, or a project's own channel), else the project's override."""
    row = await lookups.channel(conn, principal, channel_id)
    principal.require_manage(row.organization_id, "set up or remove the Slack integration")
    if row.kind != slack_checks.KIND:
        raise invalid(
            "channel_id",
            f"channel {channel_id} is a {row.kind} channel; the Slack install is for "
            "slack_app channels (create one with kind 'slack_app')",
        )
    if project_id is None:
        return row, None
    if row.project_id is not None:
        if project_id != row.project_id:
            raise invalid("project_id", f"this channel belongs to project {row.project_id} only")
        return row, None  # a project's own channel has no overrides: its config is its own
    project = await lookups.project(conn, principal, project_id)
    if project.organization_id != row.organization_id:
        raise invalid("project_id", f"project {project_id} is not in this channel's organization")
    return row, project_id


async def start_install(
    conn: AsyncConnection,
    principal: Principal,
    settings: Settings,
    channel_id: int,
    project_id: int | None,
) -> InstallLink:
    """Stage a fresh install state; the link sends the admin to Slack's authorize page."""
    client_id, _ = _credentials(settings)
    redirect_uri = settings.base_url.rstrip("/") + CALLBACK_PATH
    row, level = await _level(conn, principal, channel_id, project_id)
    oauth_state = await slack_installs.create_state(
        conn,
        channel_id=row.id,
        project_id=level,
        user_id=principal.user_id,
        redirect_uri=redirect_uri,
    )
    url = URL(settings.slack_oauth_authorize_url).update_query(
        client_id=client_id, scope=SCOPES, redirect_uri=redirect_uri, state=oauth_state
    )
    return InstallLink(str(url), STATE_TTL)


async def finish_install(
    engine: AsyncEngine,
    reader: AsyncEngine,
    box: SecretBox,
    settings: Settings,
    *,
    oauth_state: str | None,
    code: str | None,
    error: str | None,
) -> Installed:
    """Where Slack sends the browser back. No API token: the state authenticates."""
    if not oauth_state:
        raise BadRequest(f"the callback carries no state; {_AGAIN}", code="invalid_state")
    async with engine.begin() as conn:
        found = await slack_installs.consume_state(conn, oauth_state)
    if isinstance(found, StateProblem):
        raise BadRequest(_STATE_PROBLEMS[found], code="invalid_state")
    if error:
        raise BadRequest(
            f"Slack did not install the app ({error}); nothing changed. If your workspace "
            f"needs an admin's approval, get it, then {_AGAIN}",
            code="slack_declined",
        )
    if not code:
        raise BadRequest(f"the callback carries no code; {_AGAIN}", code="invalid_callback")
    client_id, client_secret = _credentials(settings)
    async with reader.connect() as conn:
        row = await _still_allowed(conn, found)
    base = settings.slack_api_base_url.rstrip("/")
    try:
        async with SlackClient(base) as slack:
            installed = await slack.oauth_access(
                client_id=client_id,
                client_secret=client_secret,
                code=code,
                redirect_uri=found.redirect_uri,
            )
    except SlackError as exc:
        why = _OAUTH_ERRORS.get(exc.error, "see Slack's oauth.v2.access documentation")
        raise BadRequest(
            f"Slack refused the install: {exc.error} ({why}); {_AGAIN}", code="slack_refused"
        ) from None
    except SlackUnreachable as exc:
        raise UpstreamFailed(
            f"could not reach Slack ({exc}); {_AGAIN}", code="slack_unreachable"
        ) from None

    async with engine.begin() as conn:
        await slack_installs.write_level(
            conn,
            box,
            channel_id=row.id,
            project_id=found.project_id,
            public={
                "workspace": installed.team_name,
                "team_id": installed.team_id,
                "api_base_url": base,
            },
            secret={"bot_token": installed.bot_token},
        )
        config = await _effective_config(conn, box, row.id, found.project_id)
    warnings = await _check_targets(engine, box, row.id, found.project_id, config)
    where = f"channel '{row.name}'" + (
        f" for project {found.project_id}" if found.project_id is not None else ""
    )
    page = _page(row.id, found.project_id)
    return Installed(
        answer={
            "ok": True,
            "channel_id": row.id,
            "project_id": found.project_id,
            "workspace": installed.team_name,
            "team_id": installed.team_id,
            "message": f"Slack integration done: {where} now posts to workspace "
            f"'{installed.team_name}'.",
            "warnings": warnings,
        },
        page=page,
    )


def _page(channel_id: int, project_id: int | None) -> str:
    """The configuration page an install of this level belongs to (seed 003)."""
    page = f"/integrations/{channel_id}"
    return page if project_id is None else f"{page}/projects/{project_id}"


async def page_of_state(reader: AsyncEngine, oauth_state: str | None) -> str | None:
    """The configuration page of the channel an install link was issued for, whether or
    not it is still usable; None for a state loadbell never issued (or none at all).
    A browser whose install failed goes back there, not to a JSON error."""
    if not oauth_state:
        return None
    async with reader.connect() as conn:
        found = await slack_installs.issued_for(conn, oauth_state)
    return None if found is None else _page(*found)


async def _still_allowed(conn: AsyncConnection, found: InstallState) -> Any:
    """The admin who started may still manage a live slack_app channel (and project)."""
    row = (
        await conn.execute(
            sa.select(channels)
            .where(channels.c.id == found.channel_id)
            .where(channels.c.deleted_at.is_(None))
        )
    ).first()
    if row is None or row.kind != slack_checks.KIND:
        raise Conflict("the channel was deleted meanwhile; nothing changed")
    role = (
        await conn.execute(
            sa.select(memberships.c.role)
            .where(memberships.c.user_id == found.user_id)
            .where(memberships.c.organization_id == row.organization_id)
        )
    ).scalar()
    if role is None or not Role(role).can_manage:
        raise Forbidden("the person who started this install may no longer manage the channel")
    if found.project_id is not None:
        project = (
            await conn.execute(
                sa.select(projects.c.id)
                .where(projects.c.id == found.project_id)
                .where(projects.c.organization_id == row.organization_id)
                .where(projects.c.deleted_at.is_(None))
            )
        ).first()
        if project is None:
            raise Conflict("the project was deleted meanwhile; nothing changed")
    return row


async def _effective_config(
    conn: AsyncConnection, box: SecretBox, channel_id: int, project_id: int | None
) -> dict[str, Any]:
    row = (await conn.execute(sa.select(channels).where(channels.c.id == channel_id))).one()
    eff, _ = await seen_by(conn, box, channel_from_row(row, box), project_id)
    return eff.config


async def _check_targets(
    engine: AsyncEngine,
    box: SecretBox,
    channel_id: int,
    project_id: int | None,
    config: dict[str, Any],
) -> list[str]:
    """The install stands either way; targets saved before it (no token could check them
    then) are checked now, with the new token. What Slack refuses is stored at the
    install's level as ``target_problems``: the test message is refused and deliveries to
    those targets fail without calling Slack, until the targets are saved again (which
    checks them) or the install is redone. Returns the warnings for the answer."""
    targets = parse_targets(config.get("targets"))
    if not targets:
        return ["no target channels yet: set config.targets (public channels, e.g. #load-tests)"]
    try:
        problems = await slack_checks.target_problems(config, targets)
    except ServiceError as exc:
        return [f"could not check the target channels: {exc.message}"]
    check = {"team_id": config.get("team_id"), "targets": problems}
    # Outside the install's transaction: SQLite's write lock must not wait on Slack.
    async with engine.begin() as conn:
        await slack_installs.write_level(
            conn,
            box,
            channel_id=channel_id,
            project_id=project_id,
            public={CHECK_KEY: check} if problems else None,
            drop=() if problems else (CHECK_KEY,),
        )
    if not problems:
        return []
    return [
        *problems.values(),
        "until these targets are fixed, 'Send Test Message' is refused and messages to them "
        "are not posted: fix them in Slack and save config.targets again, or remove them",
    ]


async def remove_install(
    conn: AsyncConnection,
    box: SecretBox,
    principal: Principal,
    channel_id: int,
    project_id: int | None,
) -> dict[str, Any]:
    """Delete the install data at one level. The token stays valid in Slack until the app
    is uninstalled there: another level may share the workspace's token."""
    row, level = await _level(conn, principal, channel_id, project_id)
    removed = await slack_installs.write_level(
        conn,
        box,
        channel_id=row.id,
        project_id=level,
        drop=(*INSTALL_KEYS, CHECK_KEY),  # a check made with the removed token
    )
    config = await _effective_config(conn, box, row.id, level)
    workspace = config.get("workspace") if config.get("bot_token") else None
    if level is None:
        message = "Slack integration removed." if removed else "No Slack integration to remove."
    elif workspace:
        message = f"The project now uses the organization's Slack workspace '{workspace}'."
    else:
        message = "The project now has no Slack integration (the organization has none either)."
    return {
        "channel_id": row.id,
        "project_id": level,
        "removed": removed,
        "workspace": workspace,
        "message": message,
    }
