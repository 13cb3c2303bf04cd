"""The channel as a project sees it: the one place that works it out.

An organization channel seen by project P is the organization's settings with P's override
on top (seed 003: ``domain/inheritance.py``); a project's own channel is its own settings;
an event of no project sees the organization's. The kind's defaults fill what neither
gives. The API (``GET /channels/{id}/effective``, overrides, previews, the test hook, the
Slack install), the web pages, the fan-out of events and the worker all ask
:func:`as_seen_by`; the store's statements only decide which override rows to read, by
``domain.inheritance.override_applies`` (``tests/services/test_channel_view.py`` holds
the API, the page and the delivery path to one answer).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.channels.registry import get_kind
from loadbell.domain import health, noise
from loadbell.domain.inheritance import Effective, merge, override_applies
from loadbell.security.secretbox import SecretBox
from loadbell.store.channels import ChannelRow, OverrideRow, load_overrides


def defaults_of(kind: str) -> dict[str, Any]:
    """The kind's defaults, and those of the keys every kind takes."""
    return {health.KEY: health.DEFAULT, **noise.DEFAULTS, **get_kind(kind).defaults}


def as_seen_by(
    channel: ChannelRow, override: OverrideRow | None, project_id: int | None
) -> Effective:
    """``channel`` as ``project_id`` sees it (None: an event of no project), with the
    source of each value. ``override`` is the project's override row, if it has one; it
    is ignored where no override applies (a project's own channel)."""
    defaults = defaults_of(channel.kind)
    if channel.project_id is not None:
        # A project's own channel: its values are the project's, and it has no override.
        return merge(
            org_enabled=channel.enabled,
            org_config={},
            project_enabled=channel.enabled,
            project_config=channel.config,
            defaults=defaults,
        )
    applies = override is not None and override_applies(channel.project_id, project_id)
    return merge(
        org_enabled=channel.enabled,
        org_config=channel.config,
        project_enabled=override.enabled if override is not None and applies else None,
        project_config=override.config if override is not None and applies else {},
        defaults=defaults,
    )


async def override_of(
    conn: AsyncConnection, box: SecretBox, channel: ChannelRow, project_id: int | None
) -> OverrideRow | None:
    """``project_id``'s override of ``channel``, when one applies and is stored."""
    if project_id is None or not override_applies(channel.project_id, project_id):
        return None
    found = await load_overrides(conn, [(channel.id, project_id)], box)
    return found.get((channel.id, project_id))


async def seen_by(
    conn: AsyncConnection, box: SecretBox, channel: ChannelRow, project_id: int | None
) -> tuple[Effective, OverrideRow | None]:
    """:func:`as_seen_by`, with the override read from the database; and that override."""
    override = await override_of(conn, box, channel, project_id)
    return as_seen_by(channel, override, project_id), override
