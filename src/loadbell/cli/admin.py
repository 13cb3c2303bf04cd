"""Commands that administer a database: `keys rotate`, `token create`, `user set-password`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from loadbell.cli.common import database_option, make_settings, prepare_database, run_coroutine
from loadbell.settings import Settings


@click.group()
def keys() -> None:
    """Manage the secret key of secrets at rest."""


@keys.command("rotate")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    envvar="LOADBELL_ROTATE_BATCH",
    show_envvar=True,
    help="Rows re-encrypted per transaction.",
)
@database_option
def keys_rotate(batch_size: int, database_url: str | None) -> None:
    """Re-encrypt every stored secret with the newest key.

    LOADBELL_SECRET_KEY may hold several keys, comma-separated, newest first (a key file,
    one key per line). Secrets are sealed with the newest key and opened with any of them.
    To replace a key:

    \b
      1. Restart every serve and worker with LOADBELL_SECRET_KEY="NEW,OLD".
      2. LOADBELL_SECRET_KEY="NEW,OLD" loadbell keys rotate
      3. Restart every process with LOADBELL_SECRET_KEY="NEW"; OLD can go.

    It re-encrypts channels, project overrides (Slack installs included) and the
    database's check value, in batches, printing progress and a final count on stderr.
    Safe while serve and workers run; running it again changes nothing. Sign-in
    sessions made with OLD end when OLD is dropped (people sign in again).
    """
    from loadbell.security.secretbox import SecretBox, SecretKeyError
    from loadbell.services.secret_keys import rotate
    from loadbell.store import migrate as m
    from loadbell.store.db import create_engine

    settings = make_settings(database_url=database_url)
    try:
        box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
    except SecretKeyError as exc:
        raise click.ClickException(f"{exc}; there is nothing to rotate with") from None

    def progress(line: str) -> None:
        click.echo(line, err=True)

    async def go() -> None:
        engine = create_engine(settings)
        try:
            if not await m.is_current(engine):
                raise click.ClickException(
                    "the database schema is not up to date; run `loadbell migrate` first"
                )
            try:
                done = await rotate(engine, box, progress, batch=batch_size)
            except SecretKeyError as exc:
                raise click.ClickException(str(exc)) from None
        finally:
            await engine.dispose()
        click.echo(done.summary(), err=True)
        if done.unopened:
            raise click.ClickException(done.unopened_message())

    run_coroutine(go())


@click.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option(
    "--org",
    "org_id",
    type=int,
    default=None,
    envvar="LOADBELL_TOKEN_ORG",
    show_envvar=True,
    help="Organization id. Default: the first organization.",
)
@click.option(
    "--role",
    type=click.Choice(["owner", "admin", "member"]),
    default="member",
    show_default=True,
    envvar="LOADBELL_TOKEN_ROLE",
    show_envvar=True,
    help="Role of the token's service user.",
)
@click.option(
    "--name",
    default="api token",
    show_default=True,
    envvar="LOADBELL_TOKEN_NAME",
    show_envvar=True,
    help="A label for the token.",
)
@click.option(
    "--init",
    is_flag=True,
    envvar="LOADBELL_TOKEN_INIT",
    show_envvar=True,
    help="Create the database (SQLite) and its first organization and owner if there are "
    "none, instead of refusing.",
)
@database_option
def token_create(
    org_id: int | None, role: str, name: str, init: bool, database_url: str | None
) -> None:
    """Create a token and print only the token, so scripts can capture it."""
    import sqlalchemy as sa

    from loadbell.domain.roles import Role
    from loadbell.services import members
    from loadbell.services.errors import Invalid, NotFound
    from loadbell.store.db import create_engine
    from loadbell.store.tables import organizations

    settings = make_settings(database_url=database_url)

    if not init:
        _refuse_missing_file(settings)

    async def go() -> str:
        if not init:
            await _refuse_new_database(settings)
        first = await prepare_database(settings, migrate_sqlite=True)
        if first:
            # stdout carries only the new token; the first-run owner token must not be lost.
            click.echo(
                "note: this database was empty; created 'Default Organization' and an owner.\n"
                f"Owner API token (shown once, keep it safe): {first}",
                err=True,
            )
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                target = org_id
                if target is None:
                    target = (
                        await conn.execute(sa.select(sa.func.min(organizations.c.id)))
                    ).scalar()
                try:
                    return await members.issue_service_token(conn, int(target), Role(role), name)
                except NotFound as exc:
                    raise click.ClickException(
                        f"{exc.message}; list them with GET /api/v1/organizations"
                    ) from None
                except Invalid as exc:
                    raise click.BadParameter(exc.message, param_hint="--name") from None
        finally:
            await engine.dispose()

    click.echo(run_coroutine(go()))


def _refuse_missing_file(settings: Settings) -> None:
    """Stop ``token create`` run in the wrong folder: a SQLite file that does not exist
    would be a new database with an organization of its own."""
    from loadbell.store.db import sqlite_path

    if settings.is_sqlite:
        path = Path(sqlite_path(settings.database_url)).resolve()
        if not path.exists():
            raise click.ClickException(
                f"the database at {path} does not exist: pass --init to create it, or set "
                "LOADBELL_DATABASE_URL to the database `serve` uses"
            )


async def _refuse_new_database(settings: Settings) -> None:
    """Stop ``token create`` where it would set up a database (a wrong
    LOADBELL_DATABASE_URL): a token of a fresh organization helps no one."""
    from loadbell.store import accounts, migrate
    from loadbell.store.db import create_engine

    engine = create_engine(settings)
    try:
        if await migrate.current(engine) is None:
            first = "pass --init"
            if not settings.is_sqlite:
                first = "run `loadbell migrate`, then pass --init"
            raise click.ClickException(
                f"the database has no loadbell schema yet: {first} to set it up, or set "
                "LOADBELL_DATABASE_URL to the database `serve` uses"
            )
        async with engine.connect() as conn:
            if await accounts.is_empty(conn):
                raise click.ClickException(
                    "the database has no organization yet: pass --init to create one with an "
                    "owner, or set LOADBELL_DATABASE_URL to the database `serve` uses"
                )
    finally:
        await engine.dispose()


@click.group()
def user() -> None:
    """Manage the people who sign in to the web pages."""


@user.command("set-password")
@click.option("--email", required=True, help="The email address to sign in with.")
@click.option(
    "--user-id",
    type=int,
    default=None,
    help="Whose password. Default: the user with this email, else the first owner.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@database_option
def user_set_password(
    email: str, user_id: int | None, password_stdin: bool, database_url: str | None
) -> None:
    """Set a user's email and password for the web sign-in (e.g. the first-run owner)."""
    import sqlalchemy as sa

    from loadbell.security.passwords import check_strength, hash_password
    from loadbell.store import members
    from loadbell.store.db import create_engine
    from loadbell.store.tables import memberships

    if members.email_problem(email):
        raise click.BadParameter(str(members.email_problem(email)), param_hint="--email")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = check_strength(password)
    if problem:
        raise click.ClickException(f"password refused: {problem}")
    settings = make_settings(database_url=database_url)

    async def go() -> int:
        await prepare_database(settings, migrate_sqlite=True)
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                target = user_id
                if target is None:
                    found = await members.account_by_email(conn, email)
                    target = found.user_id if found else None
                if target is None:
                    target = (
                        await conn.execute(
                            sa.select(sa.func.min(memberships.c.user_id)).where(
                                memberships.c.role == "owner"
                            )
                        )
                    ).scalar()
                if target is None or await members.account(conn, int(target)) is None:
                    raise click.ClickException(f"user {target} does not exist")
                try:
                    await members.set_sign_in(
                        conn, int(target), email=email, password_hash=hash_password(password)
                    )
                except members.MembershipError as exc:
                    raise click.ClickException(str(exc)) from None
                return int(target)
        finally:
            await engine.dispose()

    target = run_coroutine(go())
    click.echo(f"user {target} signs in as {members.normalize_email(email)}", err=True)
