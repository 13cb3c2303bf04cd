"""Members: owners and admins invite people (an initial password shown once), change
roles and create API tokens (shown once). Members see the page read-only. Everyone can
set their own email and password under "Your account"."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.security.passwords import (
    check_strength,
    fingerprint,
    hash_password,
    verify_password,
)
from loadbell.services import members
from loadbell.services.errors import Conflict, Forbidden, Invalid, NotFound
from loadbell.store import members as store
from loadbell.web.pages import Ctx, PageRoute, field_errors

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def _page(
    ctx: Ctx,
    org_id: int,
    *,
    status: int = 200,
    invited: dict[str, str] | None = None,
    token: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    async with ctx.state.reader.connect() as conn:
        people = await members.list_members(conn, ctx.who, org_id)
        tokens = await members.list_tokens(conn, ctx.who, org_id)
    return await ctx.render(
        "members.html",
        status=status,
        org_id=org_id,
        section="members",
        people=people,
        tokens=tokens,
        services={m.user_id for m in people if m.service},
        can_manage=ctx.can_manage(org_id),
        my_role=ctx.who.role_in(org_id),
        roles=members.ROLES,
        invited=invited,
        token=token,
        errors=errors or {},
        values=values or {},
    )


@router.get("/orgs/{org_id}/members")
async def members_page(request: Request, org_id: int) -> Response:
    ctx = await Ctx.of(request)
    # A one-time secret left by the POST that redirected here (post/redirect/get).
    return await _page(
        ctx, org_id, invited=ctx.shown_once("invited"), token=ctx.shown_once("token")
    )


@router.post("/orgs/{org_id}/members/invite")
async def invite(request: Request, org_id: int) -> Response:
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "invite members")
    name = str(form.get("name") or "").strip()
    email = store.normalize_email(str(form.get("email") or ""))
    role = members.parse_role(form.get("role") or "member")
    values = {"name": name, "email": email, "role": role.value}
    # Every problem of the form at once, beside its fields.
    errors = members.invite_problems(name, email)
    if errors:
        return await _page(ctx, org_id, status=422, errors=errors, values=values)
    try:
        async with ctx.state.engine.begin() as conn:
            invited = await members.invite(conn, ctx.who, org_id, name=name, email=email, role=role)
    except (Invalid, Conflict) as exc:
        return await _page(ctx, org_id, status=422, errors=field_errors(exc), values=values)
    ctx.keep_once(
        "invited", name=invited.name, email=invited.email, password=invited.password or ""
    )
    return ctx.redirect(f"/orgs/{org_id}/members", f"{invited.name} invited.")


@router.post("/orgs/{org_id}/members/{user_id}/role")
async def change_role(request: Request, org_id: int, user_id: int) -> Response:
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "change roles")
    role = members.parse_role(form.get("role"))
    try:
        async with ctx.state.engine.begin() as conn:
            await members.change_role(conn, ctx.who, org_id, user_id, role)
    except (Conflict, Forbidden, NotFound) as exc:
        # The caller may manage (checked above): these are the organization's rules.
        return ctx.redirect(
            f"/orgs/{org_id}/members", f"Role not changed: {exc.message}", problem=True
        )
    ctx.state.forget_principals()
    return ctx.redirect(f"/orgs/{org_id}/members", f"Role changed to {role.value}.")


@router.post("/orgs/{org_id}/members/{user_id}/remove")
async def remove_member(request: Request, org_id: int, user_id: int) -> Response:
    ctx = await Ctx.of(request)
    await ctx.form()
    ctx.require_manage(org_id, "remove members")
    try:
        async with ctx.state.engine.begin() as conn:
            await members.remove_member(conn, ctx.who, org_id, user_id)
    except (Conflict, Forbidden, NotFound) as exc:
        return ctx.redirect(f"/orgs/{org_id}/members", f"Not removed: {exc.message}", problem=True)
    ctx.state.forget_principals()
    if user_id == ctx.who.user_id:
        return ctx.redirect("/", "You left the organization.")
    return ctx.redirect(f"/orgs/{org_id}/members", "Removed from the organization.")


@router.post("/orgs/{org_id}/tokens")
async def create_token(request: Request, org_id: int) -> Response:
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "create API tokens")
    name = str(form.get("token_name") or "").strip()
    role = members.parse_role(form.get("token_role") or "member", "token_role")
    try:
        async with ctx.state.engine.begin() as conn:
            token = await members.create_token(conn, ctx.who, org_id, name=name, role=role)
    except Invalid as exc:
        return await _page(
            ctx,
            org_id,
            status=422,
            errors={"token_name": field_errors(exc)[exc.field or ""]},
            values={"token_name": name, "token_role": role.value},
        )
    ctx.keep_once("token", name=name, role=role.value, token=token)
    return ctx.redirect(f"/orgs/{org_id}/members", f"API token “{name}” created.")


@router.post("/orgs/{org_id}/tokens/{token_id}/revoke")
async def revoke_token(request: Request, org_id: int, token_id: int) -> Response:
    ctx = await Ctx.of(request)
    await ctx.form()
    async with ctx.state.engine.begin() as conn:
        await members.revoke_token(conn, ctx.who, org_id, token_id)
    ctx.state.forget_principals()
    return ctx.redirect(f"/orgs/{org_id}/members", "Token revoked.")


# -- your account ----------------------------------------------------------------------


async def _account_page(
    ctx: Ctx,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    async with ctx.state.reader.connect() as conn:
        me = await store.account(conn, ctx.who.user_id)
    assert me is not None
    return await ctx.render(
        "account.html",
        status=status,
        org_id=min(ctx.who.roles) if ctx.who.roles else None,
        section="members",
        account=me,
        errors=errors or {},
        values=values or {"email": me.email or "", "name": me.name},
    )


@router.get("/account")
async def account_page(request: Request) -> Response:
    ctx = await Ctx.of(request)
    return await _account_page(ctx)


@router.post("/account")
async def save_account(request: Request) -> Response:
    """Set your name, email and password. Changing the password asks for the current one
    (unless you have none yet) and signs out your other sessions."""
    ctx = await Ctx.of(request)
    form = await ctx.form()
    name = str(form.get("name") or "").strip()
    email = store.normalize_email(str(form.get("email") or ""))
    current = str(form.get("current_password") or "")
    new = str(form.get("new_password") or "")
    again = str(form.get("new_password_again") or "")
    values = {"name": name, "email": email}
    errors: dict[str, str] = {}
    async with ctx.state.reader.connect() as conn:
        me = await store.account(conn, ctx.who.user_id)
    assert me is not None
    if not name:
        errors["name"] = "give your name"
    if email:
        problem = store.email_problem(email)
        if problem:
            errors["email"] = problem
    elif new:
        errors["email"] = "give an email address: you sign in with it and your password"
    if new:
        strength = check_strength(new)
        if strength:
            errors["new_password"] = strength
        elif new != again:
            errors["new_password_again"] = "the two new passwords differ; type it again"
        if me.password_hash is not None and not verify_password(me.password_hash, current):
            errors["current_password"] = "this is not your current password"
    if errors:
        return await _account_page(ctx, status=422, errors=errors, values=values)
    password_hash = hash_password(new) if new else None
    try:
        async with ctx.state.engine.begin() as conn:
            await store.set_sign_in(
                conn, me.user_id, email=email or None, password_hash=password_hash, name=name
            )
    except store.MembershipError as exc:
        return await _account_page(ctx, status=422, errors={"email": str(exc)}, values=values)
    if password_hash is not None and ctx.session.token_id is None:
        # This session stays signed in; every other one (old fingerprint) is signed out.
        ctx.sign_in(
            ctx.session.signed_in(me.user_id, token_id=None, password=fingerprint(password_hash))
        )
    message = "Password and account saved." if new else "Account saved."
    return ctx.redirect("/account", message)
