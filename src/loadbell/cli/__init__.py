"""The ``loadbell`` command line. Every option shows its environment variable in --help.

One module per kind of command: ``server`` (serve, worker, migrate), ``admin`` (keys, token,
user), ``maintenance`` (prune, backup) and ``tools`` (run, receiver); ``common`` holds what
they share.
"""

from __future__ import annotations

import logging

import click

from loadbell import __version__
from loadbell.cli import admin, maintenance, server, tools


@click.group()
@click.version_option(__version__, prog_name="loadbell")
def main() -> None:
    """loadbell: notifications for load tests."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


for command in (
    server.serve,
    server.worker,
    server.migrate,
    admin.keys,
    admin.token,
    admin.user,
    maintenance.prune,
    maintenance.backup,
    tools.receiver,
    tools.run,
):
    main.add_command(command)
