"""``serve``'s delivery worker process: the child's side (``python -m loadbell.cli.worker_child``).

``loadbell worker``'s code (``cli/server.py: _work``) with four links to the ``serve`` that
started it (``delivery/child.py``): its stdin brings the settings as one JSON line, then one
byte per wake-up, and EOF once ``serve`` is gone, on which it stops as on SIGTERM; its
metrics go to the Unix socket ``serve`` named; and one byte on the pipe ``serve`` passed
(``ready_fd``) says it is ready, once its start-up is done (D72).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

import click
import orjson

from loadbell.settings import Settings

log = logging.getLogger("loadbell.worker")


def main() -> None:
    from loadbell.cli import logs
    from loadbell.cli.common import run_coroutine
    from loadbell.cli.errors import explain, remember_settings

    header, early = _read_header(sys.stdin.fileno())
    settings = Settings.model_validate(header["settings"])
    remember_settings(settings)
    logs.configure(settings.log_format)
    try:
        run_coroutine(
            _run(settings, header["metrics"], poked=bool(early), ready_fd=header["ready_fd"])
        )
    except click.ClickException as exc:  # one line, in the log's form; serve restarts us
        log.error("the delivery worker process stopped: %s", exc.format_message())
        sys.exit(1)
    except Exception as exc:  # what an operator can fix in one line; the rest with its trace
        message = explain(exc, settings)
        unexpected = message.startswith("unexpected error")
        log.error("the delivery worker process stopped: %s", message, exc_info=unexpected)
        sys.exit(1)


def _read_header(fd: int) -> tuple[dict[str, Any], bytes]:
    """The JSON line ``serve`` writes first, and any poke bytes read past it."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            sys.exit(0)  # serve went away before we started
        data += chunk
    line, _, rest = data.partition(b"\n")
    header: dict[str, Any] = orjson.loads(line)
    return header, rest


async def _run(settings: Settings, metrics_path: str, *, poked: bool, ready_fd: int) -> None:
    from loadbell.cli.server import _work
    from loadbell.delivery.wakeup import Wakeup

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    wakeup = Wakeup()
    if poked:
        wakeup.poke()
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    orphaned = False

    def readable() -> None:
        nonlocal orphaned
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if data:
            wakeup.poke()
            return
        loop.remove_reader(fd)
        orphaned = True
        if not stop.is_set():
            log.warning("serve is gone; the delivery worker process stops")
            stop.set()

    loop.add_reader(fd, readable)
    try:
        # No LISTEN and no SQLite watch: serve pokes through the pipe after each commit
        # that staged deliveries, and either hint would wake the worker a second time for
        # the same commit (the watch also after the worker's own claims and results), for
        # a claim that finds nothing: three round trips per notification on PostgreSQL
        # (D68). What other processes stage waits at most LOADBELL_POLL_SECONDS.
        await _work(
            settings,
            stop=stop,
            wakeup=wakeup,
            listen=False,
            metrics_path=metrics_path,
            ready=lambda: _say_ready(ready_fd),
        )
    finally:
        loop.remove_reader(fd)
        if orphaned:  # serve cannot remove the socket's directory any more: we do
            with contextlib.suppress(OSError):
                os.unlink(metrics_path)
                os.rmdir(os.path.dirname(metrics_path))


def _say_ready(fd: int) -> None:
    """One byte on serve's ready pipe, then close it: serve counts this process as running."""
    try:
        os.write(fd, b"\x01")
    except OSError as exc:  # serve is gone: its stdin's EOF stops us
        log.warning("could not tell serve that the worker is ready: %s", exc)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
