"""The ``loadbell`` command line. Every option shows its environment variable in --help.

One module per kind of command: ``server`` (serve, worker, migrate), ``admin`` (keys, token,
user), ``maintenance`` (prune, backup), ``tools`` (run, receiver) and ``forward``; ``common``
holds what they share and ``errors`` what a failed command prints.
"""

from __future__ import annotations

import importlib

import click

from loadbell import __version__
from loadbell.cli import logs
from loadbell.cli.errors import LoadbellGroup

# Each command's module is imported when the command runs (or --help lists them all), so
# `loadbell run` inside a load test starts without the server's dependencies: about
# 0.1 s of CPU instead of 0.5 s, which a short, CPU-bound k6 run would otherwise pay.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("server", "serve"),
    "worker": ("server", "worker"),
    "migrate": ("server", "migrate"),
    "keys": ("admin", "keys"),
    "token": ("admin", "token"),
    "user": ("admin", "user"),
    "prune": ("maintenance", "prune"),
    "backup": ("maintenance", "backup"),
    "receiver": ("tools", "receiver"),
    "run": ("tools", "run"),
    "forward": ("forward", "forward_command"),
}


class Commands(LoadbellGroup):
    """The top-level group: click's documented lazy loading of subcommands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"loadbell.cli.{module}"), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=Commands)
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
