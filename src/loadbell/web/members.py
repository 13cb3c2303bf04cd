"""Members: owners and admins invite people (an initial password shown once), change
roles and create API tokens (shown once). Members see the page read-only. Everyone can
set their own email and password under "Your account"."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.domain.roles import Role
from loadbell.security.passwords import (
    check_strength,
    fingerprint,
    generate_initial,
    hash_password,
    verify_password,
)
from loadbell.store import accounts
from loadbell.store import members as store
from loadbell.web.pages import Ctx, PageError, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
ROLES = tuple(r.value for r in Role)


def _role(value: Any) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise PageError(422, f"'{value}' is not a role; use owner, admin or member") from None


def _may_grant(me: Role, role: Role) -> None:
    if role is Role.OWNER and me is not Role.OWNER:
        raise PageError(403, "only an owner may make someone an owner")


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
    ctx.who.role_in(org_id)
    async with ctx.state.reader.connect() as conn:
        people = await store.list_members(conn, org_id)
        tokens = await store.list_tokens(conn, org_id)
    return await ctx.render(
        "members.html",
        status=status,
        org_id=org_id,
        section="members",
        people=people,
        tokens=tokens,
        can_manage=ctx.can_manage(org_id),
        my_role=ctx.who.role_in(org_id),
        roles=ROLES,
        invited=invited,
        token=token,
        errors=errors or {},
        values=values or {},
    )


@router.get("/orgs/{org_id}/members")
async def members_page(request: Request, org_id: int) -> Response:
    ctx = await Ctx.of(request)
    return await _page(ctx, org_id)


@router.post("/orgs/{org_id}/members/invite")
async def invite(request: Request, org_id: int) -> Response:
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "invite members")
    name = str(form.get("name") or "").strip()
    email = store.normalize_email(str(form.get("email") or ""))
    role = _role(form.get("role") or "member")
    _may_grant(ctx.who.role_in(org_id), role)
    values = {"name": name, "email": email, "role": role.value}
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "give the person's name, as others will see it"
    problem = store.email_problem(email)
    if problem:
        errors["email"] = problem
    if errors:
        return await _page(ctx, org_id, status=422, errors=errors, values=values)
    password: str | None = None
    async with ctx.state.engine.begin() as conn:
        existing = await store.account_by_email(conn, email)
        if existing is not None:
            if await store.role_of(conn, org_id, existing.user_id) is not None:
                errors["email"] = f"{email} is already a member of this organization"
            else:
                await accounts.add_member(conn, org_id, existing.user_id, role)
        else:
            password = generate_initial()
            user_id = await accounts.create_user(conn, name, email)
            await store.set_sign_in(conn, user_id, password_hash=hash_password(password))
            await accounts.add_member(conn, org_id, user_id, role)
    if errors:
        return await _page(ctx, org_id, status=422, errors=errors, values=values)
    return await _page(
        ctx, org_id, invited={"name": name, "email": email, "password": password or ""}
    )


@router.post("/orgs/{org_id}/members/{user_id}/role")
async def change_role(request: Request, org_id: int, user_id: int) -> Response:
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "change roles")
    role = _role(form.get("role"))
    try:
        async with ctx.state.engine.begin() as conn:
            await store.change_role(conn, org_id, user_id, role, by=ctx.who.role_in(org_id))
    except store.MembershipError as exc:
        return ctx.redirect(f"/orgs/{org_id}/members", f"Role not changed: {exc}")
    ctx.state.forget_principals()
    return ctx.redirect(f"/orgs/{org_id}/members", f"Role changed to {role.value}.")


@router.post("/orgs/{org_id}/tokens")
async def create_token(request: Request, org_id: int) -> Response:
    ctx = await Ctx.of(request)
    form = await ctx.form()
    ctx.require_manage(org_id, "create API tokens")
    name = str(form.get("token_name") or "").strip()
    role = _role(form.get("token_role") or "member")
    _may_grant(ctx.who.role_in(org_id), role)
    if not name or len(name) > 200:
        return await _page(
            ctx,
            org_id,
            status=422,
            errors={"token_name": "give the token a name of 1 to 200 characters, such as 'CI'"},
            values={"token_name": name, "token_role": role.value},
        )
    async with ctx.state.engine.begin() as conn:
        token = await accounts.service_token(conn, org_id, role, name)
    return await _page(ctx, org_id, token={"name": name, "role": role.value, "token": token})


@router.post("/orgs/{org_id}/tokens/{token_id}/revoke")
async def revoke_token(request: Request, org_id: int, token_id: int) -> Response:
    ctx = await Ctx.of(request)
    await ctx.form()
    ctx.require_manage(org_id, "revoke API tokens")
    async with ctx.state.engine.begin() as conn:
        found = await store.revoke_token(conn, org_id, token_id)
    ctx.state.forget_principals()
    if not found:
        raise PageError(404, f"token {token_id} not found in this organization")
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
