"""What follows a disabling (delivery/disabling.py): the channel.disabled event is
recorded once, also when the worker that disabled the channel died before announcing it
(the next worker's start-up sweep finds it)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from conftest import seed
from loadbell.delivery.disabling import Announcer
from loadbell.delivery.wakeup import Wakeup
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import channels, deliveries, events


def _channel(name: str, **values: object) -> dict[str, object]:
    return {
        "organization_id": 1,
        "project_id": None,
        "kind": "webhook",
        "name": name,
        "enabled": True,
        "config": {"format": "loadmance"},
        "secrets": SecretBox("test-secret-key").seal({"url": "http://127.0.0.1:9/hook"}),
        "events": ["channel.disabled"],
        "filters": {},
        "retry": {},
        **values,
    }


async def test_a_disabling_left_unannounced_is_announced_once(settings: Settings) -> None:
    """A channel disabled without its event (its worker died) gets it from a sweep: one
    event, one delivery to the other channel; sweeping and announcing again add nothing."""
    await seed(settings)
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            dead = (
                await conn.execute(
                    sa.insert(channels)
                    .values(
                        _channel(
                            "dead",
                            enabled=False,
                            disabled_at=datetime.now(UTC),
                            disabled_reason="disabled after 3 consecutive failed deliveries",
                        )
                    )
                    .returning(channels.c.id)
                )
            ).scalar_one()
            other = (
                await conn.execute(
                    sa.insert(channels).values(_channel("ops")).returning(channels.c.id)
                )
            ).scalar_one()
        announcer = Announcer(engine, SecretBox("test-secret-key"), settings, Wakeup())
        announcer.sweep()
        await announcer.wait()
        announcer.sweep()
        await announcer.announce([dead])
        await announcer.wait()
        async with engine.connect() as conn:
            recorded = list(
                await conn.execute(sa.select(events).where(events.c.type == "channel.disabled"))
            )
            sent = list(await conn.execute(sa.select(deliveries.c.channel_id, deliveries.c.status)))
            marked = (
                await conn.execute(
                    sa.select(channels.c.disabled_announced_at).where(channels.c.id == dead)
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    [event] = recorded
    assert event.context["channel"]["id"] == dead
    assert event.context["channel"]["disabled_reason"].startswith("disabled after 3")
    # The dead channel subscribes too: its copy is recorded skipped, the other one's sent.
    assert sorted((r.channel_id, r.status) for r in sent) == sorted(
        [(dead, "skipped"), (other, "pending")]
    )
    assert marked is not None
