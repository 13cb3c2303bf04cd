"""The one typed Settings object. Built by the CLI or by ``create_app``, never at import time."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The base of links when LOADBELL_PUBLIC_URL is unset and no `serve` address is known (a
# `loadbell worker` of its own): `serve`'s default address.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
# Addresses that mean "every interface": no one can open a link to them.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def resolve_public_url(configured: str | None, listen: tuple[str, int] | None = None) -> str:
    """The base URL of every link loadbell writes (notifications, pages, redirects).

    ``LOADBELL_PUBLIC_URL`` when set; else the address ``serve`` listens on (``listen``,
    host and port), with a wildcard host (0.0.0.0, ::) replaced by this machine's host name,
    since whoever listens on every interface means others to reach it; else
    :data:`DEFAULT_PUBLIC_URL`. ``serve`` at 0.0.0.0:18080 on host ``bench1``:
    ``http://bench1:18080``.
    """
    if configured:
        return configured.rstrip("/")
    if listen is None:
        return DEFAULT_PUBLIC_URL
    host, port = listen
    if host in _WILDCARDS:
        host = socket.gethostname() or "127.0.0.1"
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOADBELL_", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./loadbell.db",
        description="SQLAlchemy URL: sqlite+aiosqlite:///path.db or postgresql+asyncpg://...",
    )
    secret_key: str | None = Field(
        default=None,
        description="Key for secrets at rest. Unset: a key file is generated on first run.",
    )
    secret_key_file: Path = Field(
        default=Path("./loadbell.key"),
        description="Where the generated key lives when LOADBELL_SECRET_KEY is unset.",
    )
    allow_private_targets: bool = Field(
        default=False,
        description="Allow delivery to private, loopback and link-local addresses.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL people use to reach this server (links in notifications). "
        "Unset: the address `serve` listens on; a `loadbell worker` uses "
        f"{DEFAULT_PUBLIC_URL} (see resolve_public_url).",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest accepted request body."
    )
    max_in_flight: int = Field(
        default=64,
        ge=1,
        description="Requests one serve process handles at once; past it, 503 with Retry-After "
        "at once (docs/configuration.md).",
    )
    max_loop_lag_ms: int = Field(
        default=50,
        ge=0,
        description="Milliseconds the event loop may run late before new requests get a 503 "
        "at once; 0 turns this off (docs/configuration.md).",
    )
    max_due_backlog: int = Field(
        default=2000,
        ge=0,
        description="Deliveries due and not yet sent past which requests that change "
        "something get a 503 with Retry-After until the workers catch up; 0 turns this off "
        "(docs/configuration.md).",
    )
    # The Slack app (kind slack_app). Point the URLs at loadbell.testing.fake_slack in tests.
    slack_api_base_url: str = Field(
        default="https://slack.com/api",
        description="Slack Web API base; stored with each install, next to its token.",
    )
    slack_oauth_authorize_url: str = Field(
        default="https://slack.com/oauth/v2/authorize",
        description="Where 'set up Slack integration' sends the browser (OAuth v2).",
    )
    slack_client_id: str | None = Field(
        default=None, description="The Slack app's client ID (Basic Information page)."
    )
    slack_client_secret: str | None = Field(
        default=None, description="The Slack app's client secret (Basic Information page)."
    )
    # The instance's own mail (owners and admins hear of a channel disabled for failing).
    smtp_host: str | None = Field(
        default=None, description="Mail server for loadbell's own mail; unset: none is sent."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="The mail server's port.")
    smtp_from: str | None = Field(
        default=None, description="Sender address of loadbell's own mail (needed with the host)."
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if it needs one.")
    smtp_password: str | None = Field(default=None, description="SMTP password, if it needs one.")
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the connection with STARTTLS (false: plain SMTP)."
    )
    # Worker tuning. The lease must outlive one attempt (timeout) with margin, or a slow
    # but live attempt could be re-sent by another worker.
    lease_seconds: float = Field(default=30.0, gt=0)
    worker_concurrency: int = Field(default=128, ge=1, description="Attempts in flight per worker.")
    per_channel_concurrency: int = Field(
        default=16,
        ge=1,
        description="Attempts in flight per channel, so one dead endpoint cannot take every slot.",
    )
    fast_channel_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Attempts in flight for a channel whose attempts answer within 0.25 s on "
        "average. Unset: 4 x per_channel_concurrency, at most half of worker_concurrency (64 "
        "by default). A value at or below per_channel_concurrency turns it off.",
    )
    claim_batch: int = Field(
        default=200, ge=1, description="Most deliveries one claim leases (one transaction)."
    )
    poll_seconds: float = Field(
        default=1.0, gt=0, description="Fallback poll when no wake-up arrives (seconds)."
    )
    sqlite_synchronous: str = Field(
        default="NORMAL",
        description="SQLite PRAGMA synchronous. NORMAL (WAL) survives a crash of the process; "
        "FULL also a power cut, at one fsync per API write (docs/configuration.md).",
    )
    # Prometheus metrics (issue 11, "Prometheus metrics"; docs/metrics.md).
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token that scraping /metrics needs. Unset: /metrics is open, so "
        "firewall it (docs/metrics.md).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port on which `loadbell worker` serves /metrics. Unset: none.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address on which `loadbell worker` serves /metrics (with a metrics port).",
    )
    # Issue 11, structured logs: the form of every log line, set once at start-up (cli/logs.py).
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How log lines are written to stderr: text, or json (one JSON object per "
        "line with time, level, logger, message and the line's fields).",
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per HTTP request (method, path, status, duration, request "
        "id). Off by default: a reverse proxy usually logs requests already.",
    )
    # Retention (issue 11): what the worker prunes, and how often (services/retention.py).
    retention_days: int = Field(
        default=30,
        ge=0,
        description="Days finished deliveries, their attempts, events and intermediate reports "
        "are kept; 0 keeps everything. Runs and their final figures are always kept.",
    )
    prune_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between two prune passes of a worker (the first comes after a "
        "random part of it, so that several workers spread out).",
    )
    prune_batch: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Rows one prune transaction removes at most (deliveries with their "
        "attempts, events or reports), so the write lock is held briefly.",
    )

    @field_validator("sqlite_synchronous")
    @classmethod
    def _sync_mode(cls, v: str) -> str:
        v = v.upper()
        if v not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError("LOADBELL_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        return v

    @field_validator("database_url")
    @classmethod
    def _driver(cls, v: str) -> str:
        # Accept the plain scheme users copy from elsewhere and pick our async driver.
        if v.startswith("sqlite:///"):
            v = "sqlite+aiosqlite:///" + v.removeprefix("sqlite:///")
        elif v.startswith(("postgres://", "postgresql://")):
            v = "postgresql+asyncpg://" + v.split("://", 1)[1]
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("LOADBELL_DATABASE_URL must start with sqlite:/// or postgresql://")
        # A URL SQLAlchemy cannot read (a port that is no number, say) fails here, where the
        # message can name the setting, not when the first connection is made.
        from sqlalchemy.engine import make_url

        try:
            make_url(v)
        except Exception as exc:  # SQLAlchemy raises ArgumentError or ValueError
            raise ValueError(
                f"LOADBELL_DATABASE_URL is not a valid URL ({exc}); write it as "
                "postgresql://USER:PASSWORD@HOST:5432/NAME or sqlite:///path/to/loadbell.db"
            ) from None
        return v

    @property
    def fast_channel_cap(self) -> int:
        """Attempts in flight for a fast channel (delivery/holds.py), never below the cap of
        any other channel."""
        if self.fast_channel_concurrency is not None:
            fast = self.fast_channel_concurrency
        else:
            fast = min(4 * self.per_channel_concurrency, self.worker_concurrency // 2)
        return max(self.per_channel_concurrency, fast)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def base_url(self) -> str:
        """The base of links: ``public_url``, resolved by :func:`resolve_public_url` (``serve``
        stores its listening address in ``public_url`` when it is unset)."""
        return resolve_public_url(self.public_url)
