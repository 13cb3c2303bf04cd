"""The ``loadbell`` command line. Every option shows its environment variable in --help.

One module per kind of command: ``server`` (serve, worker, migrate), ``admin`` (keys, token,
user), ``maintenance`` (prune, backup), ``tools`` (run, receiver) and ``forward``; ``common``
holds what they share and ``errors`` what a failed command prints.
"""

from __future__ import annotations

import click

from loadbell import __version__
from loadbell.cli import admin, forward, logs, maintenance, server, tools
from loadbell.cli.errors import LoadbellGroup


@click.group(cls=LoadbellGroup)
@click.version_option(__version__, prog_name="loadbell")
@click.option(
    "--debug",
    is_flag=True,
    envvar="LOADBELL_DEBUG",
    show_envvar=True,
    help="Show the traceback of an error instead of a one-line message.",
)
def main(debug: bool) -> None:
    """loadbell: notifications for load tests."""
    logs.configure("text")  # until a command's settings say otherwise (make_settings)


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
    forward.forward_command,
):
    main.add_command(command)
