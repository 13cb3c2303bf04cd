"""Installing the Slack app into a ``slack_app`` channel: the API edge of
``services/slack.py`` (Slack's OAuth v2 flow, seed 003).

1. ``GET /slack/install?channel_id=&project_id=`` (owner/admin, API token) answers 302 to
   Slack's authorize page, with a fresh ``state``.
2. Slack sends the browser back to ``GET /slack/oauth/callback?code=&state=``; the state
   is the credential (no API token). A browser goes back to the configuration page,
   with ``?slack=done`` or, when the install failed, ``?slack=<error code>``.
3. ``DELETE /slack/install?channel_id=&project_id=`` removes the install data at that
   level; a project then falls back to the organization's install.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from loadbell.api.auth import current_principal
from loadbell.api.responses import (
    COMMON,
    SlackInstalled,
    SlackInstallLink,
    SlackRemoved,
    errors,
    ok,
    redirect,
)
from loadbell.api.state import AppState, get_state
from loadbell.services import slack
from loadbell.services.access import Principal
from loadbell.services.errors import ServiceError

router = APIRouter(prefix="/slack", tags=["slack"])


@router.get(
    "/install",
    status_code=302,
    response_model=None,
    responses={
        **ok(SlackInstallLink, 302, "Redirect to Slack's authorize page (also in the body)"),
        **COMMON,
        **errors(403, 404),
    },
)
async def start_install(
    channel_id: int,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> JSONResponse:
    """Redirect to Slack's authorize page. Scripts can read ``authorize_url`` from the body
    and open it in the browser of the admin who installs."""
    async with state.engine.begin() as conn:
        link = await slack.start_install(conn, principal, state.settings, channel_id, project_id)
    return JSONResponse(
        {"authorize_url": link.authorize_url, "expires_in": link.expires_in},
        status_code=302,
        headers={"Location": link.authorize_url, "Cache-Control": "no-store"},
    )


@router.get(
    "/oauth/callback",
    response_model=None,
    responses={
        **ok(SlackInstalled, 200, "Installed (clients that do not ask for text/html)"),
        **redirect(303, "Installed: a browser goes back to the channel's page"),
        # No API token here, so no 401; the query is plain strings, so no 422.
        **errors(400, 403, 409, 500, 502, 503),
    },
)
async def finish_install(
    request: Request,
    oauth_state: str | None = Query(default=None, alias="state"),
    code: str | None = None,
    error: str | None = None,
    state: AppState = Depends(get_state),
) -> dict[str, Any] | Response:
    """Where Slack sends the browser back. No API token: the state authenticates.
    A browser (Accept: text/html) goes back to the configuration page (seed 003), which
    now shows the workspace; other clients get the JSON below."""
    browser = "text/html" in request.headers.get("accept", "")
    try:
        done = await slack.finish_install(
            state.engine,
            state.reader,
            state.box,
            state.settings,
            oauth_state=oauth_state,
            code=code,
            error=error,
        )
    except ServiceError as exc:
        if not browser:
            raise
        # "Cancel" on Slack's page, a stale link, a refusal: back to the integration's
        # page (the organization's list when the link names none), which says what went
        # wrong by its code and offers "Set Up Slack Integration" again.
        page = await slack.page_of_state(state.reader, oauth_state) or "/"
        return RedirectResponse(f"{page}?slack={exc.code}", status_code=303)
    if browser:
        return RedirectResponse(f"{done.page}?slack=done", status_code=303)
    return done.answer


@router.delete(
    "/install",
    response_model=None,
    responses={**ok(SlackRemoved), **COMMON, **errors(403, 404)},
)
async def remove_install(
    channel_id: int,
    project_id: int | None = None,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Delete the install data at one level. The token stays valid in Slack until the app
    is uninstalled there: another level may share the workspace's token."""
    async with state.engine.begin() as conn:
        return await slack.remove_install(conn, state.box, principal, channel_id, project_id)
