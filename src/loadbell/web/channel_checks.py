"""What a channel's Setup page tells before anything is sent: that its URL points at an
address this server will not deliver to, and what a test message still needs.

The API saves a URL whatever address it names: the SSRF guard decides on each attempt,
from the address the host resolves to then (``delivery/guard.py``), because a DNS name can
change. The page mirrors that rule and does not refuse the URL; it warns, so a channel is
never saved towards a failure in silence. It judges only what needs no lookup: an IP
address written in the URL, and ``localhost`` names, which always mean this machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yarl import URL

from loadbell.channels.registry import get_kind
from loadbell.channels.slack_app import parse_targets, refused_targets
from loadbell.security.addresses import is_forbidden, literal_ip
from loadbell.values import ConfigError


def _refused_host(url: str) -> str | None:
    """The host of ``url`` when it is an address the guard refuses, else None."""
    try:
        host = URL(url).raw_host or ""
    except ValueError:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return host
    ip = literal_ip(host)
    return host if ip is not None and is_forbidden(ip) else None


def private_target(kind: str, config: Mapping[str, Any], *, allowed: bool) -> str | None:
    """Why deliveries of this saved config will fail at the SSRF guard, or None.

    ``config`` is the saved config with its secrets opened (only a host is shown from
    it); ``allowed`` is this server's ``allow_private_targets``. Kinds that do not send
    through the HTTP sender (email, Apprise) are not guarded, so they get no warning."""
    if allowed or getattr(get_kind(kind), "send", None) is not None:
        return None
    for key, value in config.items():
        if not (key == "url" or key.endswith("_url")) or not isinstance(value, str):
            continue
        host = _refused_host(value)
        if host is not None:
            return (
                f"{host.strip('[]')} is a private, loopback or link-local address, and this server "
                "refuses to deliver to those. Use an address reachable from the internet, "
                "or start loadbell with --allow-private-targets (env "
                "LOADBELL_ALLOW_PRIVATE_TARGETS=1) for receivers on your own network."
            )
    return None


def test_needs(config: Mapping[str, Any] | None) -> tuple[list[str], bool]:
    """What a Slack app channel lacks before "Send Test Message" can send (seed 003: "a
    complete configuration, i.e. integration data and target channels"), in the page's
    words, and whether target channels are all it lacks. ``config`` is the saved (masked)
    config, None for a channel not saved yet."""
    config = config or {}
    needs: list[str] = []
    if not config.get("bot_token"):
        needs.append(
            "a Slack workspace (save, then “Set Up Slack Integration”)"
            if config
            else "a Slack workspace (save first, then “Set Up Slack Integration”)"
        )
    try:
        targets = parse_targets(config.get("targets"))
    except ConfigError:
        targets = []
    typed = "target channels (“Target channels” above)"
    if not targets:
        needs.append(typed)
    refused = refused_targets(config)
    if refused:
        needs.append("target channels Slack accepts: " + "; ".join(refused.values()))
    return needs, needs == [typed]
