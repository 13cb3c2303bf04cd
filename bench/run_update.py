"""CPU per run update (``services/runs.py: patch_run``), this process's and the database
server's, without HTTP or a worker.

What ``PATCH /runs/{id} {"status": 2}`` costs in its transaction: the run read under its
lock, its update and status history, the fan-out's reads, the event and its delivery (leased
to a stand-in for the in-process worker, as ``serve``'s handoff does), on one webhook
channel. Run updates go one after another, each in its own transaction, so the figures are
CPU time per update, not a rate. The server's CPU is read from ``/proc/PID/schedstat`` of
the backends of the scratch database (PostgreSQL on this machine only).

    python -m bench.run_update                  # PostgreSQL, 3 rounds of 1,000
    python -m bench.run_update --db sqlite
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click

from bench import databases, loop
from bench.backlog import create_load_test, create_runs, create_webhook_channel
from bench.deliveries import SECRET, _settings
from bench.queue_cost import _server_cpu
from loadbell.domain.roles import Role
from loadbell.domain.statuses import RunStatus
from loadbell.security.secretbox import SecretBox
from loadbell.services import runs
from loadbell.services.access import Principal
from loadbell.store.channels import ChannelRow, OverrideRow
from loadbell.store.db import create_engine, transaction
from loadbell.store.outbox import Lease
from loadbell.store.queue import Claimed

WARM = 200  # updates before the first round (statement caches, prepared statements)


class _Room:
    """A handoff with room for every delivery, which drops what it is given."""

    def lease_for(self, channel_id: int) -> Lease | None:
        return Lease("bench", time.time() + 30)

    def stage(self, claimed: Claimed, channel: ChannelRow, override: OverrideRow | None) -> None:
        pass


def _backends(url: str) -> list[int]:
    name = url.rsplit("/", 1)[-1]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres:") and f" {name} ".encode() in title:
            pids.append(int(proc.name))
    return pids


async def _measure(backend: str, workdir: Path, n: int, rounds: int) -> str:
    async with databases.scratch_database(backend, workdir, "run_update") as url:
        settings = _settings(url, workdir, None)
        await databases.seed(settings)
        box = SecretBox(SECRET)
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                await create_webhook_channel(conn, box, "http://127.0.0.1:9/", ["test.started"])
                run_ids = iter(
                    await create_runs(conn, await create_load_test(conn), WARM + n * rounds)
                )
            owner = Principal(1, "owner", 1, None, {1: Role.OWNER})

            async def update() -> None:
                async with transaction(engine) as conn:
                    await runs.patch_run(
                        conn,
                        box,
                        owner,
                        next(run_ids),
                        status=RunStatus.RUNNING,
                        result=None,
                        metrics=None,
                        public_url="http://loadbell.bench",
                        handoff=_Room(),
                    )

            for _ in range(WARM):
                await update()
            lines = []
            for _ in range(rounds):
                pids = _backends(url)
                load = os.getloadavg()[0]
                client, server = time.process_time(), _server_cpu(pids)
                for _ in range(n):
                    await update()
                client, server = time.process_time() - client, _server_cpu(pids) - server
                lines.append(
                    f"load {load:.2f}: client {client / n * 1e6:,.0f} µs, "
                    f"server {server / n * 1e6:,.0f} µs per run update"
                )
            return "\n".join(lines)
        finally:
            await engine.dispose()


@click.command()
@click.option("--n", "n", default=1000, show_default=True, help="Run updates per round.")
@click.option("--rounds", default=3, show_default=True)
@click.option("--db", "backend", type=click.Choice(["postgresql", "sqlite"]), default="postgresql")
def main(n: int, rounds: int, backend: str) -> None:
    """CPU per run update, client and database server."""
    with tempfile.TemporaryDirectory(prefix="loadbell-bench-") as workdir:
        click.echo(loop.run(_measure(backend, Path(workdir), n, rounds)))


if __name__ == "__main__":
    main()
