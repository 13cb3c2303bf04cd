"""A channel as one project sees it, and the split of its config into public and secret
values: both depend on the channel's kind, so they live above the store."""

from __future__ import annotations

from typing import Any

from loadbell.channels.registry import get_kind
from loadbell.domain.inheritance import Effective, merge
from loadbell.store.channels import ChannelRow, OverrideRow


def split_secrets(kind: str, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    secret_keys = get_kind(kind).secret_keys
    public = {k: v for k, v in config.items() if k not in secret_keys}
    secret = {k: v for k, v in config.items() if k in secret_keys}
    return public, secret


def effective(channel: ChannelRow, override: OverrideRow | None) -> Effective:
    """The channel's settings as one project sees them.

    A project-level channel has no override: its own values are the project's.
    """
    defaults = get_kind(channel.kind).defaults
    if channel.project_id is not None:
        eff = merge(
            org_enabled=channel.enabled,
            org_config={},
            project_enabled=channel.enabled,
            project_config=channel.config,
            defaults=defaults,
        )
        return eff
    return merge(
        org_enabled=channel.enabled,
        org_config=channel.config,
        project_enabled=override.enabled if override else None,
        project_config=override.config if override else {},
        defaults=defaults,
    )
