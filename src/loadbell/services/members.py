"""Members and API tokens of an organization: who belongs, with which role, and the tokens
that act on it.

Owners and admins manage; members only read. The rules that protect an organization:
only an owner makes someone an owner or changes or removes an owner, and the last owner
stays an owner (and a member). Every operation stages its rows; the edge commits, and
then forgets the principals it keeps (``AppState.forget_principals``), since a role or a
token changed.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.roles import Role
from loadbell.security.passwords import generate_initial, hash_password
from loadbell.services.access import Principal, known_id
from loadbell.services.errors import NotFound, conflict, forbidden, invalid
from loadbell.store import accounts
from loadbell.store import members as store
from loadbell.store.members import Member, TokenInfo

ROLES = tuple(r.value for r in Role)
NAME_MAX = 200  # characters: users.name and api_tokens.name


@dataclass(frozen=True)
class Invited:
    user_id: int
    name: str
    email: str
    password: str | None  # the initial password, shown once; None: they had an account


def parse_role(value: object, field: str = "role") -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise invalid(field, f"'{value}' is not a role; use owner, admin or member") from None


def _name_problem(name: str, what: str) -> str | None:
    if not name:
        return f"give {what}"
    if len(name) > NAME_MAX:
        return f"give {what} of 1 to {NAME_MAX} characters"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return f"give {what} on one line, without control characters"
    return None


def invite_problems(name: str, email: str) -> dict[str, str]:
    """What is wrong with an invitation's name and email (trimmed, the email lower-case),
    by field: every problem at once, for a form to show beside its fields."""
    problems: dict[str, str] = {}
    name_problem = _name_problem(name, "the person's name, as others will see it")
    if name_problem:
        problems["name"] = name_problem
    email_problem = store.email_problem(email)
    if email_problem:
        problems["email"] = email_problem
    return problems


def _may_grant(principal: Principal, organization_id: int, role: Role) -> None:
    if role is Role.OWNER and principal.role_in(organization_id) is not Role.OWNER:
        raise forbidden("only an owner may make someone an owner")


async def list_members(
    conn: AsyncConnection, principal: Principal, organization_id: int
) -> list[Member]:
    principal.role_in(organization_id)
    return await store.list_members(conn, organization_id)


async def invite(
    conn: AsyncConnection,
    principal: Principal,
    organization_id: int,
    *,
    name: str,
    email: str,
    role: Role,
) -> Invited:
    """Add a person: an existing account (by email) joins with ``role``; otherwise an
    account is created with an initial password, returned once to pass on."""
    principal.require_manage(organization_id, "invite members")
    _may_grant(principal, organization_id, role)
    name, email = name.strip(), store.normalize_email(email)
    for field, problem in invite_problems(name, email).items():
        raise invalid(field, problem)
    existing = await store.account_by_email(conn, email)
    if existing is not None:
        if await store.role_of(conn, organization_id, existing.user_id) is not None:
            raise conflict(f"email: {email} is already a member of this organization", "email")
        await accounts.add_member(conn, organization_id, existing.user_id, role)
        return Invited(existing.user_id, existing.name, email, None)
    password = generate_initial()
    user_id = await accounts.create_user(conn, name, email)
    await store.set_sign_in(conn, user_id, password_hash=hash_password(password))
    await accounts.add_member(conn, organization_id, user_id, role)
    return Invited(user_id, name, email, password)


async def _current_role(conn: AsyncConnection, organization_id: int, user_id: int) -> Role:
    known_id("user", user_id)
    current = await store.role_of(conn, organization_id, user_id)
    if current is None:
        raise NotFound(f"user {user_id} is not a member of this organization")
    return current


async def _keep_an_owner(conn: AsyncConnection, organization_id: int, what: str) -> None:
    if await store.count_owners(conn, organization_id) <= 1:
        raise conflict(f"this is the organization's last owner; make someone else an owner {what}")


async def change_role(
    conn: AsyncConnection, principal: Principal, organization_id: int, user_id: int, role: Role
) -> None:
    """Owners grant and take away any role; admins move people between admin and member.
    The last owner stays an owner."""
    principal.require_manage(organization_id, "change roles")
    current = await _current_role(conn, organization_id, user_id)
    if Role.OWNER in (current, role) and principal.role_in(organization_id) is not Role.OWNER:
        raise forbidden("only an owner may make someone an owner or change an owner's role")
    if current is Role.OWNER and role is not Role.OWNER:
        await _keep_an_owner(conn, organization_id, "first")
    await store.set_role(conn, organization_id, user_id, role)


async def remove_member(
    conn: AsyncConnection, principal: Principal, organization_id: int, user_id: int
) -> None:
    """Take a person out of the organization, and revoke their tokens scoped to it (they
    could no longer act with them anyway). Only an owner removes an owner, and the last
    owner stays."""
    principal.require_manage(organization_id, "remove members")
    current = await _current_role(conn, organization_id, user_id)
    if current is Role.OWNER:
        if principal.role_in(organization_id) is not Role.OWNER:
            raise forbidden("only an owner may remove an owner")
        await _keep_an_owner(conn, organization_id, "before removing this one")
    await store.remove_membership(conn, organization_id, user_id)


def _token_name(name: str) -> str:
    name = name.strip()
    problem = _name_problem(name, "the token a name")
    if problem:
        raise invalid("name", f"{problem}, such as 'CI'")
    return name


async def issue_service_token(
    conn: AsyncConnection, organization_id: int, role: Role, name: str
) -> str:
    """A token for scripts: a service user with ``role`` in this organization only. For a
    caller trusted with the whole database (``loadbell token create``); people go through
    :func:`create_token`. Returns the token: the only time it exists in plain text."""
    name = _token_name(name)
    known_id("organization", organization_id)
    try:
        return await accounts.service_token(conn, organization_id, role, name)
    except LookupError:
        raise NotFound(f"organization {organization_id} does not exist") from None


async def create_token(
    conn: AsyncConnection, principal: Principal, organization_id: int, *, name: str, role: Role
) -> str:
    """An owner's or admin's new service token (only an owner may issue an owner token)."""
    principal.require_manage(organization_id, "create API tokens")
    _may_grant(principal, organization_id, role)
    return await issue_service_token(conn, organization_id, role, name)


async def list_tokens(
    conn: AsyncConnection, principal: Principal, organization_id: int
) -> list[TokenInfo]:
    """Tokens that act on the organization, newest first, revoked ones included."""
    principal.role_in(organization_id)
    return await store.list_tokens(conn, organization_id)


async def revoke_token(
    conn: AsyncConnection, principal: Principal, organization_id: int, token_id: int
) -> None:
    principal.require_manage(organization_id, "revoke API tokens")
    if not await store.revoke_token(conn, organization_id, token_id):
        raise NotFound(f"token {token_id} not found in this organization")
