"""Bearer-token authentication and organization scoping.

A resource of an organization the caller cannot see is a 404, never a 403, so a token
learns nothing about other organizations. A member who can see a resource but may not
change it gets a 403.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from fastapi import Request

from loadbell.api.errors import ApiError
from loadbell.api.state import AppState, state_of
from loadbell.domain.roles import Role
from loadbell.security.tokens import hash_token
from loadbell.services.access import Principal
from loadbell.store.tables import api_tokens, memberships, users

_UNAUTHORIZED = ApiError(
    401,
    "unauthorized",
    "missing or invalid API token; send 'Authorization: Bearer <token>' "
    "(create one with `loadbell token create`)",
)


# A token's principal is kept this long (seconds) by the process that read it: every API
# call needs it, and reading it was a connection and a statement per call. A token revoked
# or a role changed by this process takes effect at once (AppState.forget_principals);
# other processes see the change within this time.
PRINCIPAL_TTL = 1.0
# At most this many tokens' principals are kept. An entry that expired used to be replaced
# when its token came back, and never removed: every token the process had seen stayed in
# memory. Once the map is this large, the expired entries go, and when every entry is still
# live (a burst of distinct tokens) the whole map does.
PRINCIPALS_MAX = 1024

# A token, its user and the user's roles in one statement, built once (every API call runs
# it). A token scoped to one organization sees only its role there.
_PRINCIPAL = (
    sa.select(
        api_tokens.c.id,
        api_tokens.c.user_id,
        api_tokens.c.organization_id,
        users.c.name,
        memberships.c.organization_id.label("member_of"),
        memberships.c.role,
    )
    .join(users, users.c.id == api_tokens.c.user_id)
    .outerjoin(
        memberships,
        sa.and_(
            memberships.c.user_id == api_tokens.c.user_id,
            sa.or_(
                api_tokens.c.organization_id.is_(None),
                memberships.c.organization_id == api_tokens.c.organization_id,
            ),
        ),
    )
    .where(api_tokens.c.token_hash == sa.bindparam("b_hash"))
    .where(api_tokens.c.revoked_at.is_(None))
)


async def principal_for_token(state: AppState, token: str) -> Principal | None:
    key = hash_token(token)
    known = state.principals.get(key)
    if known is not None and known[0] > time.monotonic():
        cached: Principal = known[1]
        return cached
    async with state.reader.connect() as conn:
        rows = (await conn.execute(_PRINCIPAL, {"b_hash": key})).all()
        await conn.rollback()
    if not rows:
        return None
    first = rows[0]
    roles = {r.member_of: Role(r.role) for r in rows if r.member_of is not None}
    principal = Principal(first.user_id, first.name, first.id, first.organization_id, roles)
    _remember(state.principals, key, principal)
    return principal


def _remember(principals: dict[str, tuple[float, Any]], key: str, principal: Principal) -> None:
    now = time.monotonic()
    if len(principals) >= PRINCIPALS_MAX and key not in principals:
        for old in [k for k, (until, _) in principals.items() if until <= now]:
            del principals[old]
        if len(principals) >= PRINCIPALS_MAX:
            principals.clear()
    principals[key] = (now + PRINCIPAL_TTL, principal)


async def current_principal(request: Request) -> Principal:
    # The state is read here, not as a dependency of its own: FastAPI solves each
    # sub-dependency with a walk of its own (cache key, four kinds of parameters), and
    # every API call needs this one.
    state = state_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _UNAUTHORIZED
    principal = await principal_for_token(state, token.strip())
    if principal is None:
        raise _UNAUTHORIZED
    return principal
