"""Commands that keep a database in shape: `prune` and `backup`."""

from __future__ import annotations

from pathlib import Path

import click

from loadbell.cli.common import database_option, make_settings, run_coroutine
from loadbell.settings import Settings


@click.command()
@click.option(
    "--older-than",
    default=None,
    metavar="DURATION",
    envvar="LOADBELL_PRUNE_OLDER_THAN",
    show_envvar=True,
    help="Remove what is older than this: 45s, 90m, 12h or 30d.  "
    "[default: LOADBELL_RETENTION_DAYS days]",
)
@click.option(
    "--dry-run",
    is_flag=True,
    envvar="LOADBELL_PRUNE_DRY_RUN",
    show_envvar=True,
    help="Print what would be removed; remove nothing.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=10_000),
    default=None,
    envvar="LOADBELL_PRUNE_BATCH",
    show_envvar=True,
    help="Rows removed per transaction.  "
    f"[default: {Settings.model_fields['prune_batch'].default}]",
)
@database_option
def prune(
    older_than: str | None, dry_run: bool, batch_size: int | None, database_url: str | None
) -> None:
    """Remove finished deliveries (with their attempts), events without deliveries and
    intermediate run reports older than a duration, and print the count per table.

    Pending deliveries and their events are never removed; runs keep their final figures.
    The workers do the same every LOADBELL_PRUNE_INTERVAL_SECONDS with
    LOADBELL_RETENTION_DAYS; this is for doing it now, or with another age. Safe while
    serve and workers run.
    """
    from datetime import timedelta

    from loadbell.domain.durations import DurationError, parse_duration
    from loadbell.services.retention import cutoff_for, preview
    from loadbell.services.retention import prune as prune_older
    from loadbell.store import migrate as m
    from loadbell.store.db import create_engine

    settings = make_settings(database_url=database_url, prune_batch=batch_size)
    if older_than is not None:
        try:
            age = parse_duration(older_than, option="--older-than")
        except DurationError as exc:
            raise click.UsageError(str(exc)) from None
    elif settings.retention_days == 0:
        raise click.UsageError(
            "LOADBELL_RETENTION_DAYS is 0 (keep everything); pass --older-than to prune anyway"
        )
    else:
        age = timedelta(days=settings.retention_days)

    async def go() -> None:
        engine = create_engine(settings, checkpoints=False)
        try:
            if not await m.is_current(engine):
                raise click.ClickException(
                    "the database schema is not up to date; run `loadbell migrate` first"
                )
            cutoff = cutoff_for(age)
            if dry_run:
                counts = await preview(engine, cutoff)
                verb = "would remove"
            else:
                counts = await prune_older(engine, cutoff, batch=settings.prune_batch)
                verb = "removed"
        finally:
            await engine.dispose()
        click.echo(f"older than {cutoff.isoformat(timespec='seconds')}, {verb}:")
        for table, count in counts.per_table().items():
            click.echo(f"  {table:<18} {count}")

    run_coroutine(go())


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    envvar="LOADBELL_BACKUP_FORCE",
    show_envvar=True,
    help="Replace FILE if it exists.",
)
@database_option
def backup(file: Path, force: bool, database_url: str | None) -> None:
    """Copy the SQLite database to FILE, consistently, while loadbell runs.

    Keep the secret key with the copy: without it, the channels' secrets in it cannot be
    opened. To restore, stop loadbell, put the copy in place of the database (or point
    LOADBELL_DATABASE_URL at it) and start it with the same key. For PostgreSQL, use
    pg_dump (docs/operations.md).
    """
    import sqlite3

    from loadbell.store.backup import BackupError, backup_sqlite
    from loadbell.store.db import sqlite_path

    settings = make_settings(database_url=database_url)
    if not settings.is_sqlite:
        raise click.ClickException(
            "this database is PostgreSQL: back it up with pg_dump (pg_dump --format=custom "
            "--file FILE DBNAME), and keep the secret key with it; see docs/operations.md"
        )
    source = Path(sqlite_path(settings.database_url))
    try:
        size = backup_sqlite(source, file, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"the backup of {source} failed: {exc}") from None
    click.echo(f"backup of {source} written to {file.resolve()} ({size:,} bytes)")
    if settings.secret_key:
        where = "the value of LOADBELL_SECRET_KEY"
    else:
        where = f"the key file {settings.secret_key_file.resolve()}"
    click.echo(
        f"keep the secret key with it ({where}): without it, the channels' secrets in the "
        "copy cannot be opened"
    )
