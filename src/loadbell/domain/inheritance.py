"""Value-level inheritance of an organization channel into a project (seed 003, XTC).

Rules:
- the project's "send messages" switch (``enabled``) always wins when the project sets it;
- every other value (connection data, target lists, ...) overrides only when non-empty;
- clearing a project value falls back to the organization's value;
- a project can never override with "empty": empty values are dropped, not stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Source(StrEnum):
    ORGANIZATION = "organization"
    PROJECT = "project"
    DEFAULT = "default"


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, (list, tuple, dict, set)):
        return len(value) == 0
    return False


def drop_empty(values: Mapping[str, Any]) -> dict[str, Any]:
    """An override never stores emptiness: that is what lets clearing fall back."""
    return {k: v for k, v in values.items() if not is_empty(v)}


@dataclass(frozen=True)
class Effective:
    enabled: bool
    config: dict[str, Any]
    sources: dict[str, Source] = field(default_factory=dict)


def merge(
    *,
    org_enabled: bool,
    org_config: Mapping[str, Any],
    project_enabled: bool | None,
    project_config: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> Effective:
    """Compute a channel's effective settings for one project, with each value's source."""
    sources: dict[str, Source] = {}
    config: dict[str, Any] = {}
    for key in {*defaults, *org_config, *project_config}:
        if not is_empty(project_config.get(key)):
            config[key], sources[key] = project_config[key], Source.PROJECT
        elif not is_empty(org_config.get(key)):
            config[key], sources[key] = org_config[key], Source.ORGANIZATION
        elif key in defaults:
            config[key], sources[key] = defaults[key], Source.DEFAULT
    if project_enabled is None:
        enabled, sources["enabled"] = org_enabled, Source.ORGANIZATION
    else:
        enabled, sources["enabled"] = project_enabled, Source.PROJECT
    return Effective(enabled=enabled, config=config, sources=sources)


def override_applies(channel_project_id: int | None, project_id: int | None) -> bool:
    """Whether a project's override is part of how ``project_id`` sees a channel: only an
    organization channel (no project of its own) seen by a project has one. A project's
    own channel is its own settings; an event of no project sees the organization's."""
    return channel_project_id is None and project_id is not None
