"""A channel's settings as the edges receive and show them: validation (each refusal a 422
naming the field), the split into public and secret values, and masking."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from loadbell.channels.base import ChannelKind
from loadbell.channels.registry import KINDS, get_kind
from loadbell.domain import health, k6cloud, noise, retry
from loadbell.domain.events import SUBSCRIBABLE, EventType
from loadbell.domain.filters import validate_filters
from loadbell.security.masking import MASK, mask_url
from loadbell.services.errors import Invalid, invalid
from loadbell.values import ConfigError


def kind_or_422(name: str) -> ChannelKind:
    try:
        return get_kind(name)
    except KeyError:
        raise invalid(
            "kind", f"unknown kind '{name}'; use one of {', '.join(k.value for k in KINDS)}"
        ) from None


# The keys every kind takes, each with its validator (a ValueError names the field):
# auto_disable (domain/health.py) and noise control (domain/noise.py).
COMMON: dict[str, Callable[[Any], Any]] = {health.KEY: health.validate, **noise.VALIDATORS}


def kind_own(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the keys every kind takes: what the kind's schema checks."""
    return {k: v for k, v in config.items() if k not in COMMON}


def validated_config(kind: ChannelKind, config: Mapping[str, Any]) -> dict[str, Any]:
    """The kind's schema, plus the keys every kind takes (:data:`COMMON`)."""
    try:
        clean = kind.validate(kind_own(config))
    except ConfigError as exc:
        message = exc.message
        if message.startswith("unknown key"):  # the kind lists its own keys only
            message += f"; every kind also takes {', '.join(COMMON)}"
        raise invalid(exc.field, message) from None
    for key, validate in COMMON.items():
        if key not in config:
            continue
        try:
            clean[key] = validate(config[key])
        except ValueError as exc:
            raise invalid(str(exc).split(":", 1)[0], str(exc).split(": ", 1)[-1]) from None
    return clean


K6CLOUD_FILTER = "k6cloud_events"


def k6cloud_selection(
    config: Mapping[str, Any],
    events: list[str] | None,
    filters: Mapping[str, Any] | None,
    given_filters: bool,
) -> tuple[list[str] | None, Mapping[str, Any] | None]:
    """A ``k6cloud`` webhook may subscribe with Grafana Cloud k6's identifiers
    (``test.finished.failed``): each becomes the loadbell event it narrows
    (``test.finished``) plus a ``k6cloud_events`` filter on that event. An event named by
    loadbell's own name is taken whole. Positions are kept, so a later refusal names the
    caller's ``events[i]``. ``filters`` are the caller's (``given_filters``) or the
    channel's current ones, whose ``k6cloud_events`` the new selection replaces.
    """
    if events is None or config.get("format") != "k6cloud":
        return events, filters
    chosen: dict[str, list[str]] = {}
    plain: set[str] = set()
    mapped: list[str] = []
    for i, name in enumerate(events):
        known = k6cloud.IDENTIFIERS.get(name) if isinstance(name, str) else None
        if known is not None:
            chosen.setdefault(known.event.value, []).append(name)
            mapped.append(known.event.value)
            continue
        if isinstance(name, str) and name.startswith(("test.started.", "test.finished.")):
            raise invalid(
                f"events[{i}]",
                f"'{name}' is not one of Grafana Cloud k6's event identifiers; use "
                f"{', '.join(k6cloud.IDENTIFIERS)} or loadbell's test.started, test.finished",
            )
        if isinstance(name, str):
            plain.add(name)
        mapped.append(name)
    # Copied, not changed in place; a value that is not an object is left for
    # validated_filters to refuse.
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in (filters or {}).items()}
    for event in sorted({*chosen, *plain}):
        spec = out.get(event)
        if not isinstance(spec, dict) or K6CLOUD_FILTER not in spec:
            continue
        if given_filters:  # the caller's own filter stands, unless it says it twice
            if event in chosen:
                raise invalid(
                    f"filters.{event}.{K6CLOUD_FILTER}",
                    "the identifiers are given in events already; give them in one place",
                )
            continue
        del spec[K6CLOUD_FILTER]  # the new selection replaces the stored one
        if not spec:
            del out[event]
    for event, names in chosen.items():
        if event in plain:  # loadbell's own name takes the event whole
            continue
        spec = out.setdefault(event, {})
        if isinstance(spec, dict):
            spec[K6CLOUD_FILTER] = names
    return mapped, out


def validated_events(
    kind: ChannelKind, config: Mapping[str, Any], events: list[str] | None
) -> list[str]:
    supported = kind.events(config)
    if events is None:
        # The kind's own choice when it has one (Slack: the run lifecycle), else all.
        chosen: frozenset[EventType] = getattr(kind, "default_events", supported)
        return [e.value for e in SUBSCRIBABLE if e in supported and e in chosen]
    out: list[str] = []
    for i, name in enumerate(events):
        try:
            event = EventType(name)
        except ValueError:
            hint = (
                " (Grafana Cloud k6's identifiers are taken by webhooks of format 'k6cloud')"
                if name in k6cloud.IDENTIFIERS
                else ""
            )
            raise invalid(
                f"events[{i}]",
                f"unknown event '{name}'; known events: "
                f"{', '.join(e.value for e in SUBSCRIBABLE)}{hint}",
            ) from None
        if event not in SUBSCRIBABLE:
            raise invalid(
                f"events[{i}]",
                f"'{name}' is sent on request (POST "
                "/channels/{id}/test) and cannot be subscribed to",
            )
        if event not in supported:
            can = ", ".join(e.value for e in SUBSCRIBABLE if e in supported)
            fmt = config.get("format")
            raise Invalid(
                f"events[{i}]: this {kind.name} channel"
                + (f" (format '{fmt}')" if fmt else "")
                + f" cannot express '{name}'; it can send: {can}",
                f"events[{i}]",
                code="unsupported_event",
            )
        if event.value not in out:
            out.append(event.value)
    return out


def checked_rendering(
    kind: ChannelKind, config: Mapping[str, Any], events: list[str], where: str = ""
) -> None:
    """422 when ``config`` cannot render one of the subscribed ``events`` (a webhook
    template). ``where`` says whose config it is, e.g. " (project 7's override)"."""
    check = getattr(kind, "check_events", None)
    if check is None:
        return
    try:
        check(config, [EventType(e) for e in events])
    except ConfigError as exc:
        raise invalid(exc.field, exc.message + where) from None


def validated_filters(filters: Mapping[str, Any] | None, events: list[str]) -> dict[str, Any]:
    try:
        clean = validate_filters(filters or {})
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise invalid(field, str(exc).split(": ", 1)[-1]) from None
    for name in clean:
        if name not in events:
            raise invalid(
                f"filters.{name}",
                f"the channel is not subscribed to '{name}'; "
                "add it to events or remove this filter",
            )
    return clean


def validated_retry(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        clean = retry.validate_overrides(raw or {})
    except ValueError as exc:
        raise invalid(str(exc).split(":", 1)[0], str(exc).split(": ", 1)[-1]) from None
    return clean


def mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return mask_url(value) if key.endswith("url") else MASK
    if isinstance(value, Mapping):
        return {k: MASK for k in value}
    if isinstance(value, list):
        return [MASK for _ in value]
    return MASK


def masked(kind: ChannelKind, config: Mapping[str, Any]) -> dict[str, Any]:
    shown = noise.shown(health.shown(config))
    return {k: (mask_value(k, v) if k in kind.secret_keys else v) for k, v in shown.items()}


def keep_masked(
    kind: ChannelKind, old: Mapping[str, Any], new: Mapping[str, Any]
) -> dict[str, Any]:
    """Clients send back what GET showed them; a masked value there means "unchanged"."""
    out = dict(new)
    for key in kind.secret_keys & set(new):
        value, before = new[key], old.get(key)
        if before is None:
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            out[key] = {
                h: (before[h] if v == MASK and h in before else v) for h, v in value.items()
            }
        elif value == mask_value(key, before):
            out[key] = before
    return out


def split_secrets(kind: str, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The values stored in clear, and those sealed with the secret key."""
    secret_keys = get_kind(kind).secret_keys
    public = {k: v for k, v in config.items() if k not in secret_keys}
    secret = {k: v for k, v in config.items() if k in secret_keys}
    return public, secret
