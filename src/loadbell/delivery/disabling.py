"""What follows a channel being disabled for failing: the ``channel.disabled`` event, and a
mail to the organization's owners and admins.

The disabling itself (the channel row, its pending deliveries ending ``skipped``) is
written by the worker's result write that found the thresholds reached (store/queue), in
the results' transaction. This runs after that commit, on the engine, beside the delivery
path: a failure here is logged and never holds up deliveries.

The event is recorded once: its transaction also sets ``channels.disabled_announced_at``,
guarded on it being NULL, so two workers never both announce. A worker that died between
the disabling and the announcement leaves it NULL; every worker sweeps for such channels
when it starts (:meth:`Announcer.sweep`). While the database cannot be reached, both try
again every :data:`RETRY_EVERY` seconds, :data:`TRIES` times (a stopping worker waits
:data:`STOP_WAIT` seconds for them, then leaves the rest to the next start). The mail goes
out after that commit, at most once: a process that dies in between sends none.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.channels.email import EmailKind
from loadbell.delivery.wakeup import Wakeup
from loadbell.domain.events import EventType
from loadbell.security.secretbox import SecretBox
from loadbell.services.fanout import record_event
from loadbell.settings import Settings
from loadbell.store import health as store_health
from loadbell.store.db import DATABASE_ERRORS
from loadbell.values import Message, Verdict

log = logging.getLogger("loadbell.worker")

MAIL_TIMEOUT = 20.0  # seconds
Mail = tuple[int, dict[str, Any], list[str]]  # event id, its context, the addresses
RETRY_EVERY = 5.0  # seconds between tries while the database is unreachable
TRIES = 12  # then the next worker start tries again (the channel stays unannounced)
STOP_WAIT = 5.0  # seconds a stopping worker waits for announcements under way


def disabled_context(row: Any, public_url: str) -> dict[str, Any]:
    """The ``channel.disabled`` event's context (domain/events.py)."""
    return {
        "organization": {"id": row.organization_id, "name": row.organization_name},
        "project": None,
        "load_test": None,
        "run": None,
        "extra": {},
        "channel": {
            "id": row.id,
            "name": row.name,
            "kind": row.kind,
            "project_id": row.project_id,
            "consecutive_failures": row.failures,
            "disabled_reason": row.disabled_reason,
            "url": f"{public_url.rstrip('/')}/channels/{row.id}",
        },
    }


class Announcer:
    def __init__(
        self, engine: AsyncEngine, box: SecretBox, settings: Settings, wakeup: Wakeup
    ) -> None:
        self.engine = engine
        self.box = box
        self.settings = settings
        self.wakeup = wakeup
        self._tasks: set[asyncio.Task[None]] = set()

    def disabled(self, channel_ids: Sequence[int]) -> None:
        """Announce, beside the delivery path (called by the result writer)."""
        task = asyncio.create_task(self.announce(channel_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout: float = STOP_WAIT) -> None:
        """Let announcements under way finish (the worker stops); what is still retrying
        after ``timeout`` seconds is cancelled and left to the next start's sweep."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def sweep(self) -> None:
        """Announce what a worker that died before announcing left (at start)."""
        task = asyncio.create_task(self._sweep())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        for _ in range(TRIES):
            try:
                async with self.engine.connect() as conn:
                    left = await store_health.unannounced(conn)
            except DATABASE_ERRORS:
                await asyncio.sleep(RETRY_EVERY)  # the worker logs the outage itself
                continue
            if left:
                await self.announce(left)
            return

    async def announce(self, channel_ids: Sequence[int]) -> None:
        """Record the event of each channel not announced yet, then mail; a database that
        cannot be reached is tried again every :data:`RETRY_EVERY` seconds."""
        for _ in range(TRIES):
            try:
                mails = await self._record(channel_ids)
            except DATABASE_ERRORS as exc:
                log.warning(
                    "channel.disabled for channels %s not recorded yet (%s); retrying in %g s",
                    list(channel_ids),
                    exc.__class__.__name__,
                    RETRY_EVERY,
                )
                await asyncio.sleep(RETRY_EVERY)
                continue
            except Exception:
                log.exception("announcing disabled channels %s failed", list(channel_ids))
                return
            self.wakeup.poke()
            for event_id, context, to in mails:
                try:
                    await self.mail(event_id, context, to)
                except Exception:
                    log.exception("mail about a disabled channel failed")
            return

    async def _record(self, channel_ids: Sequence[int]) -> list[Mail]:
        """The events, in one transaction; returns what to mail."""
        mails = []
        async with self.engine.begin() as conn:
            for row in await store_health.disabled_channels(conn, channel_ids):
                if not await store_health.claim_announcement(conn, row.id):
                    continue
                log.warning(
                    "channel %s (%s) disabled: %s",
                    row.id,
                    row.name,
                    row.disabled_reason,
                    extra={"channel_id": row.id, "channel_kind": row.kind},
                )
                context = disabled_context(row, self.settings.base_url)
                event_id, _ = await record_event(
                    conn,
                    self.box,
                    event_type=EventType.CHANNEL_DISABLED,
                    organization_id=row.organization_id,
                    project_id=row.project_id,
                    context=context,
                )
                to = await store_health.manager_emails(conn, row.organization_id)
                mails.append((event_id, context, to))
        return mails

    async def mail(self, event_id: int, context: dict[str, Any], to: list[str]) -> None:
        """The owners' and admins' mail, through the email channel's own sending code."""
        s = self.settings
        if not s.smtp_host or not s.smtp_from or not to:
            return
        message = Message(
            delivery_id=str(uuid.uuid4()),
            event_id=event_id,
            event_type=EventType.CHANNEL_DISABLED,
            occurred_at=datetime.now(UTC),
            context=context,
            public_url=s.base_url,
        )
        config = {
            "to": to,
            "from": s.smtp_from,
            "smtp_host": s.smtp_host,
            "smtp_port": s.smtp_port,
            "smtp_username": s.smtp_username,
            "smtp_password": s.smtp_password,
            "starttls": s.smtp_starttls,
            "tls": False,
        }
        outcome = await EmailKind().send(message, config, MAIL_TIMEOUT)
        if outcome.verdict is not Verdict.DELIVERED:
            log.warning("mail about a disabled channel not sent: %s", outcome.error)
