"""A channel as one project sees it (``services/channel_view.py: as_seen_by``), with what
the worker derives from it, worked out once per claim (or handoff) and shared by the
deliveries of that claim."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from loadbell.channels.base import ChannelKind
from loadbell.channels.rate_limit import configured_rate
from loadbell.channels.registry import get_kind
from loadbell.delivery.exchange import REQUEST_BODY_BYTES
from loadbell.domain import health
from loadbell.domain.events import EventType
from loadbell.domain.health import AutoDisable
from loadbell.domain.retry import RetryPolicy
from loadbell.security.masking import mask_secrets, secret_strings
from loadbell.services.channel_view import as_seen_by
from loadbell.store.channels import ChannelRow, OverrideRow
from loadbell.values import Message, Outcome, Rate

# A receiver answers with the same few header values over and over (its server's name, the
# length of an empty body, the date to the second): each is masked once. Bounded, as are
# the values (exchange.HEADER_VALUE_CHARS).
_mask_header_value = functools.lru_cache(maxsize=4096)(mask_secrets)


@dataclass(frozen=True)
class ChannelSetup:
    """Kinds treat ``config`` as read-only."""

    kind: ChannelKind
    config: dict[str, Any]
    enabled: bool
    policy: RetryPolicy
    events: frozenset[EventType]  # what the kind can express with this config
    paced: bool  # the kind paces per destination (it has ``rate``)
    rate: Rate | None  # the pace: the channel's ``rate_limit`` or the kind's default
    timeout: float  # of one attempt: the policy's, within the lease
    # The kind's own transport (kinds that do not speak HTTP) and its reading of a
    # response (services that report errors in 200 bodies), if it has them.
    transport: Callable[[Message, dict[str, Any], float], Awaitable[Outcome]] | None
    interpret: Callable[[Outcome], Outcome] | None
    # The channel's secret values as they could come back in a response, masked in the
    # attempt log (security/masking.py: secret_strings).
    secrets: frozenset[str] = frozenset()
    # When failing deliveries disable the channel (domain/health.py); None: never.
    auto_disable: AutoDisable | None = None

    def redact(self, outcome: Outcome) -> Outcome:
        """``outcome`` with the channel's secret values masked in what the attempt log
        keeps of the exchange: the response (a receiver may echo a header or its URL token
        back) and the body sent (a template may have put a secret in it)."""
        if not self.secrets or not (
            outcome.body_excerpt
            or outcome.error
            or outcome.request_body
            or outcome.response_headers
        ):
            return outcome
        secrets = self.secrets
        body = outcome.body_excerpt
        error = outcome.error
        sent = outcome.request_body
        headers = outcome.response_headers
        masked_body = mask_secrets(body, secrets) if body else body
        masked_error = mask_secrets(error, secrets) if error else error
        # The body sent was cut only if it was longer than the log keeps: only then can its
        # end be the start of a secret, and the search for one is skipped otherwise. With
        # no size to tell, it may have been cut.
        size = outcome.request_body_bytes
        whole = size is not None and size <= REQUEST_BODY_BYTES
        masked_sent = mask_secrets(sent, secrets, cut=not whole) if sent else sent
        masked_headers = (
            {k: _mask_header_value(v, secrets) for k, v in headers.items()} if headers else headers
        )
        if (
            masked_body is body
            and masked_error is error
            and masked_sent is sent
            and masked_headers == headers
        ):
            return outcome  # nothing to mask, the usual case: no copy of the outcome
        return replace(
            outcome,
            body_excerpt=masked_body,
            error=masked_error,
            request_body=masked_sent,
            response_headers=masked_headers,
        )

    def destination(self, message: Message) -> str:
        """The pacing key: one bucket (and hold) per kind and destination."""
        where = self.kind.destination(message, self.config)  # type: ignore[attr-defined]
        return f"{self.kind.name}:{where}"


def channel_setup(
    channel: ChannelRow,
    override: OverrideRow | None,
    project_id: int | None,
    *,
    base_policy: RetryPolicy,
    lease_seconds: float,
) -> ChannelSetup:
    """The channel as ``project_id`` sees it (None: an event of no project)."""
    kind = get_kind(channel.kind)
    eff = as_seen_by(channel, override, project_id)
    config, enabled = eff.config, eff.enabled
    rate_of = getattr(kind, "rate", None)
    policy = base_policy.with_overrides(channel.retry)
    return ChannelSetup(
        kind=kind,
        config=config,
        enabled=enabled,
        policy=policy,
        events=kind.events(config),
        paced=rate_of is not None,
        rate=(configured_rate(config) or rate_of(config)) if rate_of is not None else None,
        # The lease must outlive an attempt, or another worker could send it too.
        timeout=min(policy.timeout, lease_seconds * 0.8),
        transport=getattr(kind, "send", None),
        interpret=getattr(kind, "interpret", None),
        secrets=secret_strings(config[k] for k in kind.secret_keys if k in config),
        auto_disable=health.of(config),
    )
