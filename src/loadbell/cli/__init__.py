"""The ``loadbell`` command line. Every option shows its environment variable in --help.

One module per kind of command: ``server`` (serve, worker, migrate), ``admin`` (keys, token,
user) and ``tools`` (run, receiver); ``common`` holds what they share.
"""

from __future__ import annotations

import click

from loadbell import __version__
from loadbell.cli import admin, logs, server, tools


@click.group()
@click.version_option(__version__, prog_name="loadbell")
def main() -> None:
    """loadbell: notifications for load tests."""
    logs.configure("text")  # until a command's settings say otherwise (make_settings)


for command in (
    server.serve,
    server.worker,
    server.migrate,
    admin.keys,
    admin.token,
    admin.user,
    tools.receiver,
    tools.run,
):
    main.add_command(command)
