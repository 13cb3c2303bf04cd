"""What an operator reads when a command fails: one or two lines, never a traceback.

Every command runs inside :class:`LoadbellGroup`, which maps the exceptions an operator can
cause and fix (a database that is down, missing or unwritable, a port in use, a key that
does not fit, a malformed setting) to a message naming the problem and what to do. Any other
exception becomes "unexpected error: ...". ``--debug`` (``LOADBELL_DEBUG``) lets every
exception through with its traceback.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported when needed: `loadbell run` starts without pydantic
    from loadbell.settings import Settings

SETTINGS = "loadbell.settings"  # key in click's ``Context.meta``: the command's Settings


class ListenError(Exception):
    """``serve`` could not bind its address (the port is taken, or the address is not ours)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(f"{host}:{port}: {cause.strerror or cause}")
        self.host, self.port, self.cause = host, port, cause


def remember_settings(settings: Settings) -> None:
    """Keep the command's settings, so a database error can name the database."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[SETTINGS] = settings


class LoadbellGroup(click.Group):
    """A click group whose commands fail in one or two lines (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(explain(exc, ctx.meta.get(SETTINGS))) from None


def explain(exc: BaseException, settings: Settings | None) -> str:
    """The message for ``exc``: the first rule that knows an exception of its chain."""
    chain = list(_chain(exc))
    for rule in _RULES:
        for link in chain:
            message = rule(link, settings)
            if message:
                return message
    return f"unexpected error: {_name(exc)}; run again with --debug for details"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it, nearest first (SQLAlchemy keeps the driver's error in
    ``orig``; asyncio and SQLAlchemy re-raise with ``__cause__`` or ``__context__``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        for nxt in (current.__cause__, orig, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _name(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _postgres(settings: Settings | None) -> tuple[str, int, str]:
    """(host, port, database name) of a PostgreSQL URL, for messages."""
    from sqlalchemy.engine import make_url

    if settings is None:
        return "localhost", 5432, "NAME"
    url = make_url(settings.database_url)
    return url.host or "localhost", url.port or 5432, url.database or "NAME"


def _sqlite_file(settings: Settings | None) -> Path | None:
    from sqlalchemy.engine import make_url

    if settings is None or not settings.is_sqlite:
        return None
    return Path(make_url(settings.database_url).database or "").resolve()


def _settings_invalid(exc: BaseException, _: Settings | None) -> str | None:
    from pydantic import ValidationError

    from loadbell.settings import Settings

    if not isinstance(exc, ValidationError) or exc.title != Settings.__name__:
        return None
    lines = []
    for error in exc.errors():
        name = "LOADBELL_" + "_".join(str(part) for part in error["loc"]).upper()
        text = error["msg"].removeprefix("Value error, ")
        # The validators' messages start with the setting's name already.
        lines.append(f"{name}: {text.removeprefix(name).lstrip(' :')}")
    return "invalid setting " + "; ".join(lines)


def _listen(exc: BaseException, _: Settings | None) -> str | None:
    if not isinstance(exc, ListenError):
        return None
    where = f"{exc.host}:{exc.port}"
    if exc.cause.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another loadbell?).\n"
            "Stop the process that holds it, or choose another port with --port or "
            "LOADBELL_PORT."
        )
    if exc.cause.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot listen on {where}: permission denied.\n"
            "Choose a port above 1023 with --port or LOADBELL_PORT."
        )
    return (
        f"cannot listen on {where}: {exc.cause.strerror or exc.cause}.\n"
        "Choose an address of this machine with --host or LOADBELL_HOST (127.0.0.1: this "
        "machine only; 0.0.0.0: every interface)."
    )


def _postgres_refused(exc: BaseException, settings: Settings | None) -> str | None:
    import asyncpg

    host, port, name = _postgres(settings)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (
            f'the PostgreSQL database "{name}" at {host}:{port} does not exist.\n'
            f"Create it (createdb -h {host} -p {port} {name}), or fix the database name in "
            "LOADBELL_DATABASE_URL."
        )
    if isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return (
            f"PostgreSQL at {host}:{port} refused the connection: {exc}.\n"
            "Fix the user and password in LOADBELL_DATABASE_URL."
        )
    return None


def _unreachable(exc: BaseException, settings: Settings | None) -> str | None:
    from loadbell.store.db import DatabaseUnavailable

    if not isinstance(exc, DatabaseUnavailable):
        return None
    host, port, _ = _postgres(settings)
    return (
        f"cannot reach PostgreSQL at {host}:{port} ({exc}).\n"
        "Start PostgreSQL, or fix the host and port in LOADBELL_DATABASE_URL."
    )


# What SQLite says when it cannot create or write the file.
_UNWRITABLE = ("unable to open database file", "readonly database", "disk i/o error")


def _sqlite_unwritable(exc: BaseException, settings: Settings | None) -> str | None:
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    if not any(text in str(exc).lower() for text in _UNWRITABLE):
        return None
    path = _sqlite_file(settings)
    if path is None:
        return None
    return (
        f"cannot open the SQLite database {path} for writing ({exc}).\n"
        f"Check that the folder {path.parent} exists and is writable by this user, "
        "or set LOADBELL_DATABASE_URL to another path."
    )


def _secret_key(exc: BaseException, _: Settings | None) -> str | None:
    from loadbell.security.secretbox import SecretKeyError

    return str(exc) if isinstance(exc, SecretKeyError) else None


def _file(exc: BaseException, _: Settings | None) -> str | None:
    if not isinstance(exc, PermissionError | FileNotFoundError | NotADirectoryError):
        return None
    if exc.filename is None:
        return None
    return (
        f"cannot use {exc.filename}: {exc.strerror}.\n"
        "Check that its folder exists and that this user may write to it."
    )


_RULES: tuple[Callable[[BaseException, Settings | None], str | None], ...] = (
    _settings_invalid,
    _listen,
    _secret_key,
    _postgres_refused,
    _unreachable,
    _sqlite_unwritable,
    _file,
)
