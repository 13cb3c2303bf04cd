"""Command-line options that more than one bench takes, defined once so that their names,
defaults and help read the same in each bench's ``--help``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Any], Any]


def db_option(default: str = "sqlite") -> Decorator:
    """``--db sqlite|postgresql``, passed to the command as ``backend``."""
    return click.option(
        "--db",
        "backend",
        type=click.Choice(["sqlite", "postgresql"]),
        default=default,
        show_default=True,
        help="Database backend. PostgreSQL: a scratch database on LOADBELL_BENCH_PG_URL.",
    )


def rate_option(help: str) -> Decorator:
    """``--rate``, per second (200 by default); ``help`` says what the bench sends at it."""
    return click.option("--rate", default=200.0, show_default=True, help=help)
