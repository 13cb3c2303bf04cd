"""Slack app installs: the single-use OAuth state, and the install data at one level.

A level is the channel itself (``project_id`` None, or a project channel) or one project's
override of an organization channel. Install data is ordinary channel config (the bot token
among the encrypted secrets), so the value-level inheritance of seed 003 applies to it like
to any other value: a project's own install overrides the organization's, and removing it
falls back. Callers own the transaction; these functions only stage changes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.security.secretbox import SecretBox
from loadbell.store.tables import channel_overrides, channels, slack_install_states

STATE_TTL = 600.0  # seconds an install link stays usable (Slack's own codes last 10 min)
_KEEP_USED = 86_400.0  # seconds old states stay, so a replay gets "already used"


@dataclass(frozen=True)
class InstallState:
    channel_id: int
    project_id: int | None
    user_id: int
    redirect_uri: str


class StateProblem(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


async def create_state(
    conn: AsyncConnection,
    *,
    channel_id: int,
    project_id: int | None,
    user_id: int,
    redirect_uri: str,
    ttl: float = STATE_TTL,
) -> str:
    """Stage a new state and return it; only its SHA-256 is stored."""
    now = time.time()
    await conn.execute(
        sa.delete(slack_install_states).where(slack_install_states.c.expires_at < now - _KEEP_USED)
    )
    state = secrets.token_urlsafe(32)
    await conn.execute(
        sa.insert(slack_install_states).values(
            state_hash=_digest(state),
            channel_id=channel_id,
            project_id=project_id,
            user_id=user_id,
            redirect_uri=redirect_uri,
            expires_at=now + ttl,
        )
    )
    return state


async def consume_state(conn: AsyncConnection, state: str) -> InstallState | StateProblem:
    """Mark ``state`` used and return what it was issued for. One UPDATE decides, so two
    callbacks racing with the same state cannot both win, on either database."""
    now = time.time()
    t = slack_install_states
    row = (
        await conn.execute(
            sa.update(t)
            .where(t.c.state_hash == _digest(state))
            .where(t.c.used_at.is_(None))
            .values(used_at=now)
            .returning(
                t.c.channel_id, t.c.project_id, t.c.user_id, t.c.redirect_uri, t.c.expires_at
            )
        )
    ).first()
    if row is None:
        known = (
            await conn.execute(sa.select(t.c.id).where(t.c.state_hash == _digest(state)))
        ).first()
        return StateProblem.UNKNOWN if known is None else StateProblem.USED
    if row.expires_at < now:
        return StateProblem.EXPIRED
    return InstallState(row.channel_id, row.project_id, row.user_id, row.redirect_uri)


async def issued_for(conn: AsyncConnection, state: str) -> tuple[int, int | None] | None:
    """The channel and project ``state`` was issued for, used or not, expired or not (a
    browser that comes back with a stale link is sent to that channel's page)."""
    t = slack_install_states
    row = (
        await conn.execute(
            sa.select(t.c.channel_id, t.c.project_id).where(t.c.state_hash == _digest(state))
        )
    ).first()
    return None if row is None else (row.channel_id, row.project_id)


async def write_level(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    channel_id: int,
    project_id: int | None,
    public: Mapping[str, Any] | None = None,
    secret: Mapping[str, Any] | None = None,
    drop: Iterable[str] = (),
) -> bool:
    """Set ``public`` and ``secret`` values and remove the ``drop`` keys at one level.

    ``project_id`` None writes the channel row; otherwise the project's override (created
    when missing, with "send messages" left to inherit). Returns whether anything changed.
    """
    public, secret, drop = dict(public or {}), dict(secret or {}), set(drop)
    if project_id is None:
        table: sa.Table = channels
        where = channels.c.id == channel_id
    else:
        table = channel_overrides
        where = sa.and_(
            channel_overrides.c.channel_id == channel_id,
            channel_overrides.c.project_id == project_id,
        )
    row = (
        await conn.execute(
            sa.select(table.c.config, table.c.secrets).where(where).with_for_update()
        )
    ).first()
    if row is None:
        if project_id is None or not (public or secret):
            return False
        await conn.execute(
            sa.insert(channel_overrides).values(
                channel_id=channel_id,
                project_id=project_id,
                enabled=None,
                config=public,
                secrets=box.seal(secret),
            )
        )
        return True
    old_public, old_secret = dict(row.config or {}), box.open(row.secrets)
    new_public = {k: v for k, v in {**old_public, **public}.items() if k not in drop}
    new_secret = {k: v for k, v in {**old_secret, **secret}.items() if k not in drop}
    if new_public == old_public and new_secret == old_secret:
        return False
    await conn.execute(
        sa.update(table)
        .where(where)
        .values(
            config=new_public,
            secrets=box.seal(new_secret),
            updated_at=datetime.now(UTC),
        )
    )
    return True
