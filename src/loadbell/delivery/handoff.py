"""Handing new deliveries from an API call straight to the worker of the same process.

``loadbell serve`` runs the API and a delivery worker in one process. Without a handoff,
each run update commits its deliveries, pokes the worker, and the worker then claims them
in a transaction of its own. With one, the API's transaction writes them already leased to
the worker (``store/outbox.py``), and :meth:`Handoff.release` gives them to the worker once
that transaction has committed. The claim transaction was about a third of the CPU of an
event; the guarantees stay those of a claim (a lease that runs out if the process dies).

A handoff lives for one API call: created before the transaction, released after the
commit, dropped (never released) when the transaction fails.
"""

from __future__ import annotations

from loadbell.delivery.intake import Intake
from loadbell.store.channels import ChannelRow, OverrideRow
from loadbell.store.outbox import Lease
from loadbell.store.queue import Claimed


class Handoff:
    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self._staged: list[tuple[Claimed, ChannelRow, OverrideRow | None]] = []

    def lease_for(self, channel_id: int) -> Lease | None:
        return self._intake.lease_for(channel_id)

    def stage(self, claimed: Claimed, channel: ChannelRow, override: OverrideRow | None) -> None:
        self._staged.append((claimed, channel, override))

    def release(self) -> int:
        """Give the staged deliveries to the worker (after the commit); returns how many."""
        staged, self._staged = self._staged, []
        if staged:
            self._intake.take(staged)
        return len(staged)
