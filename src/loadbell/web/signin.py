"""Signing in (email and password, or an API token), signing out, and the switcher.

The first owner has no password yet: they sign in with the API token ``loadbell serve``
printed on first run, then set an email and password on the Members page (or with
``loadbell user set-password``).
"""

from __future__ import annotations

from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.api.auth import principal_for_token
from loadbell.security.passwords import fingerprint, verify_password
from loadbell.store.members import account_by_email
from loadbell.store.tables import projects
from loadbell.web.pages import Ctx, PageError, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SECTIONS = ("integrations", "runs", "deliveries", "members")


def safe_next(target: str | None) -> str:
    """Only paths of this site: an open redirect would let a link send people elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/")
async def home(request: Request, slack: str | None = None) -> Response:
    ctx = await Ctx.of(request)
    orgs = sorted(ctx.who.roles)
    if not orgs:
        raise PageError(
            403, "You are not a member of any organization yet; ask an owner to invite you."
        )
    # Slack's callback sends a browser here when its link names no channel: keep its code.
    after = f"?{urlencode({'slack': slack})}" if slack else ""
    return ctx.redirect(f"/orgs/{orgs[0]}/integrations{after}")


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    ctx = await Ctx.of(request, signed_in=False)
    if ctx.principal is not None:
        return ctx.redirect(safe_next(next))
    return await ctx.render(
        "login.html", next=safe_next(next), values={}, error=None, method="password"
    )


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = await Ctx.of(request, signed_in=False)
    form = await ctx.form()
    method = str(form.get("method") or "password")
    target = safe_next(str(form.get("next") or "/"))
    email = str(form.get("email") or "").strip()
    if method == "token":
        token = str(form.get("token") or "").strip()
        principal = await principal_for_token(ctx.state, token) if token else None
        if principal is not None:
            ctx.sign_in(
                ctx.session.signed_in(principal.user_id, token_id=principal.token_id, password=None)
            )
            return ctx.redirect(target)
        error = "That API token is not valid (or was revoked). Paste the whole token, lb_..."
    else:
        password = str(form.get("password") or "")
        async with ctx.state.reader.connect() as conn:
            account = await account_by_email(conn, email) if email else None
        if account is not None and verify_password(account.password_hash, password):
            ctx.sign_in(
                ctx.session.signed_in(
                    account.user_id, token_id=None, password=fingerprint(account.password_hash)
                )
            )
            return ctx.redirect(target)
        error = "Wrong email or password. Check both, or sign in with an API token."
    return await ctx.render(
        "login.html",
        status=401,
        next=target,
        values={"email": email},
        error=error,
        method=method,
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = await Ctx.of(request, signed_in=False)
    await ctx.form()
    ctx.sign_out()
    return ctx.redirect("/login", "You are signed out.")


@router.get("/switch")
async def switch(
    request: Request, org: int | None = None, project: str | None = None, section: str = ""
) -> Response:
    """The organization and project switcher (a GET form, sent with "Go"; JavaScript also
    sends it when an option is picked with the pointer)."""
    ctx = await Ctx.of(request)
    section = section if section in SECTIONS else "integrations"
    org_id = org if org is not None and org in ctx.who.roles else min(ctx.who.roles)
    project_id = int(project) if project and project.isdigit() else None
    if project_id is not None:
        async with ctx.state.reader.connect() as conn:
            owner = (
                await conn.execute(
                    sa.select(projects.c.organization_id)
                    .where(projects.c.id == project_id)
                    .where(projects.c.deleted_at.is_(None))
                )
            ).scalar_one_or_none()
        if owner != org_id:
            # The project list was the previous organization's (a new organization was
            # chosen without JavaScript, which would have cleared it): the organization wins.
            project_id = None
    if project_id is not None and section in ("integrations", "runs"):
        return ctx.redirect(f"/projects/{project_id}/{section}")
    return ctx.redirect(f"/orgs/{org_id}/{section}")
