"""The ``loadbell`` command line. Every option shows its environment variable in --help."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from loadbell import __version__
from loadbell.runtime import settle_heap
from loadbell.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from loadbell.security.secretbox import SecretBox


def _settings(**overrides: Any) -> Settings:
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except Exception as exc:  # pydantic's ValidationError, shown as a usage error
        raise click.UsageError(str(exc)) from None


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


database_option = click.option(
    "--database-url",
    envvar="LOADBELL_DATABASE_URL",
    show_envvar=True,
    default=None,
    help="Database URL. Default: sqlite:///./loadbell.db",
)


@click.group()
@click.version_option(__version__, prog_name="loadbell")
def main() -> None:
    """loadbell: notifications for load tests."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def _open_box(engine: AsyncEngine, settings: Settings) -> SecretBox:
    """The secret key, checked against the database (the check value is stored on a fresh
    one); a key that does not fit stops the command with one line that says what to do."""
    from loadbell.security.secretbox import SecretKeyError
    from loadbell.services.secret_keys import open_box

    try:
        return await open_box(engine, settings.secret_key, settings.secret_key_file)
    except SecretKeyError as exc:
        raise click.ClickException(str(exc)) from None


async def _prepare(
    settings: Settings, *, migrate_sqlite: bool, check_key: bool = False
) -> str | None:
    """Bring the schema up to date (SQLite), check the secret key (``check_key``) and seed
    an empty database.

    Returns the first owner token when one was just created.
    """
    from loadbell.store import accounts, migrate
    from loadbell.store.db import create_engine

    engine = create_engine(settings)
    try:
        if settings.is_sqlite and migrate_sqlite:
            await migrate.upgrade(engine)
        elif not await migrate.is_current(engine):
            raise click.ClickException(
                "the database schema is not up to date; run `loadbell migrate` first"
            )
        if check_key:  # before the first-run set-up: a refused process changes nothing
            await _open_box(engine, settings)
        async with engine.begin() as conn:
            if await accounts.is_empty(conn):
                return await accounts.bootstrap(conn)
        return None
    finally:
        await engine.dispose()


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="LOADBELL_HOST",
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=int,
    envvar="LOADBELL_PORT",
    show_envvar=True,
    help="Port to listen on.",
)
@click.option(
    "--no-worker",
    is_flag=True,
    envvar="LOADBELL_NO_WORKER",
    show_envvar=True,
    help="Serve the API only; run `loadbell worker` processes to deliver.",
)
@click.option(
    "--allow-private-targets",
    is_flag=True,
    default=None,
    envvar="LOADBELL_ALLOW_PRIVATE_TARGETS",
    show_envvar=True,
    help="Allow deliveries to private, loopback and link-local addresses.",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=None,
    envvar="LOADBELL_MAX_IN_FLIGHT",
    show_envvar=True,
    help="Requests handled at once; past it, 503 with Retry-After at once.  "
    f"[default: {Settings.model_fields['max_in_flight'].default}]",
)
@database_option
def serve(
    host: str,
    port: int,
    no_worker: bool,
    allow_private_targets: bool | None,
    max_in_flight: int | None,
    database_url: str | None,
) -> None:
    """Run the API, the web pages and (unless --no-worker) the delivery worker."""
    import uvicorn

    from loadbell.app import create_app

    settings = _settings(
        database_url=database_url,
        allow_private_targets=allow_private_targets,
        max_in_flight=max_in_flight,
    )
    token = _run(_prepare(settings, migrate_sqlite=True, check_key=True))
    if token:
        click.echo("Created 'Default Organization', 'Default Project' and an owner.")
        click.echo("Owner API token (shown once, keep it safe):")
        click.echo(f"  {token}")
    click.echo(f"loadbell {__version__} on http://{host}:{port} (API docs at /docs)")
    app = create_app(settings, run_worker=not no_worker)
    settle_heap()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        loop="auto",
        access_log=False,
    )


@main.command()
@click.option(
    "--allow-private-targets",
    is_flag=True,
    default=None,
    envvar="LOADBELL_ALLOW_PRIVATE_TARGETS",
    show_envvar=True,
    help="Allow deliveries to private, loopback and link-local addresses.",
)
@database_option
def worker(allow_private_targets: bool | None, database_url: str | None) -> None:
    """Run a delivery worker (any number may run against one PostgreSQL database)."""
    settings = _settings(database_url=database_url, allow_private_targets=allow_private_targets)
    _run(_work(settings))


async def _work(settings: Settings) -> None:
    from loadbell.delivery.supervise import SideTaskFailed
    from loadbell.delivery.wakeup import Wakeup
    from loadbell.delivery.worker import Worker
    from loadbell.store import migrate
    from loadbell.store.db import create_engine, sqlite_path
    from loadbell.store.queue import queue_for

    engine = create_engine(settings)
    try:
        if not await migrate.is_current(engine):
            raise click.ClickException(
                "the database schema is not up to date; run `loadbell migrate`"
            )
        box = await _open_box(engine, settings)
    finally:
        await engine.dispose()  # the worker's statements run on a connection of its own
    wakeup = Wakeup()
    if not settings.is_sqlite:
        await wakeup.listen_postgres(settings.database_url)
    else:
        await wakeup.watch_sqlite(sqlite_path(settings.database_url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    w = Worker(queue_for(settings), box, settings, wakeup)
    settle_heap()
    click.echo(f"loadbell worker {w.name} started", err=True)
    try:
        await w.run(stop)
    except SideTaskFailed as exc:
        raise click.ClickException(f"the worker stopped: {exc}") from None
    finally:
        await wakeup.close()


@main.command()
@database_option
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema."""
    from loadbell.store import migrate as m
    from loadbell.store.db import create_engine

    settings = _settings(database_url=database_url)

    # With a key at hand, a fresh database gets its check value now; without one, the
    # first `serve` or `worker` stores it (migrate makes no key file).
    has_key = bool(settings.secret_key) or settings.secret_key_file.exists()

    async def go() -> None:
        engine = create_engine(settings)
        try:
            await m.upgrade(engine)
            click.echo("database is up to date", err=True)
            if has_key:
                await _open_box(engine, settings)
        finally:
            await engine.dispose()

    _run(go())


@main.group()
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

    settings = _settings(database_url=database_url)
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

    _run(go())


@main.group()
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
@database_option
def token_create(org_id: int | None, role: str, name: str, database_url: str | None) -> None:
    """Create a token and print only the token, so scripts can capture it."""
    import sqlalchemy as sa

    from loadbell.domain.roles import Role
    from loadbell.services import members
    from loadbell.services.errors import Invalid, NotFound
    from loadbell.store.db import create_engine
    from loadbell.store.tables import organizations

    settings = _settings(database_url=database_url)

    async def go() -> str:
        first = await _prepare(settings, migrate_sqlite=True)
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

    click.echo(_run(go()))


@main.group()
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
    settings = _settings(database_url=database_url)

    async def go() -> int:
        await _prepare(settings, migrate_sqlite=True)
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

    target = _run(go())
    click.echo(f"user {target} signs in as {members.normalize_email(email)}", err=True)


@main.command()
@click.option(
    "--port",
    default=9000,
    show_default=True,
    type=int,
    envvar="LOADBELL_RECEIVER_PORT",
    show_envvar=True,
    help="Port on 127.0.0.1.",
)
@click.option(
    "--status",
    default=200,
    show_default=True,
    type=int,
    envvar="LOADBELL_RECEIVER_STATUS",
    show_envvar=True,
    help="Status to answer.",
)
def receiver(port: int, status: int) -> None:
    """Run a local receiver that prints every request (to see what loadbell sends)."""
    from loadbell.testing.receiver import serve_forever

    try:
        _run(serve_forever(port, status))
    except KeyboardInterrupt:
        pass


class _LenientEnvOption(click.Option):
    """An option of `loadbell run` whose environment variable must not stop the load test.

    A bad value typed on the command line is a usage error as usual. The same value in the
    environment (often set once for a whole CI pipeline) only prints a warning naming the
    variable, and the option falls back to its default: a notification setting never keeps
    the load test from running.
    """

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:
            source = ctx.get_parameter_source(self.name or "")
            if source is not click.core.ParameterSource.ENVIRONMENT:
                raise
            default = self.get_default(ctx)
            why = exc.message.rstrip(".")
            shown = "unset" if default is None else default
            click.echo(
                f"loadbell: ignoring {self.envvar}={os.environ.get(str(self.envvar), '')!r} "
                f"({why}); {self.opts[0]} keeps its default ({shown})",
                err=True,
            )
            return super().process_value(ctx, default)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--test",
    "test_name",
    envvar="LOADBELL_TEST",
    show_envvar=True,
    default=None,
    help="Load test name. Default: the k6 script's file name, or the command's name.",
)
@click.option(
    "--project",
    cls=_LenientEnvOption,
    type=int,
    envvar="LOADBELL_PROJECT",
    show_envvar=True,
    default=None,
    help="Project id. Default: the first project the token can see.",
)
@click.option(
    "--trigger",
    cls=_LenientEnvOption,
    type=click.Choice(["manual", "scheduled"]),
    envvar="LOADBELL_TRIGGER",
    show_envvar=True,
    default="manual",
    show_default=True,
    help="How the run was started (channels can filter on it).",
)
@click.option(
    "--report-interval",
    cls=_LenientEnvOption,
    type=click.FloatRange(min=1),
    envvar="LOADBELL_REPORT_INTERVAL",
    show_envvar=True,
    default=60.0,
    show_default=True,
    help="Seconds between intermediate reports.",
)
@click.option(
    "--apdex-t",
    cls=_LenientEnvOption,
    type=click.FloatRange(min=0, min_open=True),
    envvar="LOADBELL_APDEX_T",
    show_envvar=True,
    default=500.0,
    show_default=True,
    help="Apdex threshold T in milliseconds (k6 only).",
)
@click.option(
    "--no-apdex",
    cls=_LenientEnvOption,
    is_flag=True,
    envvar="LOADBELL_NO_APDEX",
    show_envvar=True,
    help="k6: skip the per-request stream behind Apdex (saves k6 CPU in the fastest tests).",
)
@click.option(
    "--metrics-file",
    cls=_LenientEnvOption,
    type=click.Path(dir_okay=False),
    envvar="LOADBELL_METRICS_FILE",
    show_envvar=True,
    default=None,
    help="A JSON metrics document the command writes; read at the end (and when it changes).",
)
@click.option("--url", envvar="LOADBELL_URL", show_envvar=True, default=None, help="Server URL.")
@click.option("--token", envvar="LOADBELL_TOKEN", show_envvar=True, default=None, help="API token.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    test_name: str | None,
    project: int | None,
    trigger: str,
    report_interval: float,
    apdex_t: float,
    no_apdex: bool,
    metrics_file: str | None,
    url: str | None,
    token: str | None,
    command: tuple[str, ...],
) -> None:
    """Run a load test and report it: `loadbell run [options] -- k6 run script.js`.

    Works with `k6 run` (live status, thresholds, Apdex, intermediate reports) and with
    any other command (exit 0: passed; non-zero: failed; a signal: aborted by user).
    Exits with the command's own exit code, whatever happens to the notifications.
    """
    from loadbell.client import Client, RunReporter
    from loadbell.integrations import command as generic
    from loadbell.integrations import k6, k6_run

    # "" and not None: click has read LOADBELL_PROJECT already (and warned if it was bad).
    client = Client(url, token, project if project is not None else "")
    if not client.enabled:
        click.echo(
            "loadbell: LOADBELL_URL and LOADBELL_TOKEN are not both set; "
            "running without notifications",
            err=True,
        )
    reporter = RunReporter(client)
    # Installed until the process exits, never removed: a signal after the command exited
    # only cuts the wait for the last notifications short (the exit code stays its own).
    relay = generic.SignalRelay()
    relay.install()
    argv = list(command)
    if k6.is_k6_run(argv):
        code = k6_run.run_k6(
            argv,
            reporter,
            test_name=test_name,
            project=project,
            trigger=trigger,
            report_interval=report_interval,
            apdex_t_ms=None if no_apdex else apdex_t,
            metrics_file=metrics_file,
            relay=relay,
        )
    else:
        code = generic.run_generic(
            argv,
            reporter,
            test_name=test_name or os.path.basename(argv[0]),
            project=project,
            trigger=trigger,
            report_interval=report_interval,
            metrics_file=metrics_file,
            relay=relay,
        )
    if not reporter.close(timeout=30, cancel=relay.after_exit) and relay.after_exit.is_set():
        click.echo("loadbell: interrupted; not waiting for the last notifications", err=True)
    if reporter.run_url:
        click.echo(f"loadbell: run {reporter.run_id}: {reporter.run_url}", err=True)
    # The exit code is decided. Ignore these signals from here on: while Python shuts down
    # it puts a Python-level handler back to the default, and a late Ctrl-C would kill us.
    for sig in generic.FORWARDED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
