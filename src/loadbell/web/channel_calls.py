"""The channel services as the integration pages call them: the signed-in person is the
caller, a read takes a connection of its own, and a change runs in a transaction the page
opens and commits (like an API handler, a page owns its transaction)."""

from __future__ import annotations

from typing import Any

from loadbell.services import channels, slack_checks
from loadbell.web.pages import Ctx


async def channel(ctx: Ctx, channel_id: int) -> dict[str, Any]:
    """The channel as ``GET /channels/{id}`` shows it (secrets masked)."""
    async with ctx.state.reader.connect() as conn:
        return await channels.get_channel(conn, ctx.state.box, ctx.who, channel_id)


async def raw_config(ctx: Ctx, channel_id: int) -> dict[str, Any]:
    """The stored config with secrets opened: server-side only, never rendered."""
    async with ctx.state.reader.connect() as conn:
        opened = await channels.opened(conn, ctx.state.box, ctx.who, channel_id)
    return opened.config


async def update(ctx: Ctx, channel_id: int, **changes: Any) -> dict[str, Any]:
    """Save changes as ``PATCH /channels/{id}`` does: new Slack targets are checked before
    the write transaction opens."""
    await slack_checks.before_update(
        ctx.state.reader, ctx.state.box, ctx.who, channel_id, changes.get("config")
    )
    async with ctx.state.engine.begin() as conn:
        return await channels.update_channel(conn, ctx.state.box, ctx.who, channel_id, **changes)


def drop_none(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if v is not None}
