"""A PostgreSQL server of a test's own, which the test may stop and start (an outage).

``PgServer.create()`` runs ``initdb`` into a fresh temporary directory and starts the
server on a free 127.0.0.1 port, its Unix socket in the same directory; ``stop()`` (fast
shutdown) returns once connections are refused, ``start()`` once they are accepted again;
``destroy()`` stops it and removes everything. It is tuned for speed, not durability
(``--no-sync``, ``fsync=off``, small buffers): a throwaway cluster.

initdb refuses to run as root; as root, every PostgreSQL command runs as the ``postgres``
user, which then owns the directory. The binaries are found with ``pg_config --bindir``,
else under /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"  # who runs the server when the tests run as root
# Appended to postgresql.conf. Durability is not wanted here, only speed.
_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 100
"""
WAIT_SECONDS = 60.0  # for the server to accept or refuse connections, on a slow machine


class PgUnavailable(Exception):
    """The PostgreSQL server binaries (or a user to run them as) are missing."""


def find_bindir() -> Path:
    """The directory with ``initdb``, ``pg_ctl`` and ``postgres``; raises PgUnavailable."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            )
            candidates.append(Path(out.stdout.strip()))
    # Highest version first: /usr/lib/postgresql/15/bin before /usr/lib/postgresql/13/bin.
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "nothing (no pg_config on PATH)"
    raise PgUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in "
        f"{looked}. Install the PostgreSQL server package (e.g. apt-get install postgresql)."
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    root: Path  # temporary directory: data/, socket/, server.log
    port: int
    run_as: str | None  # a user to run the commands as (running as root), else None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """loadbell's database URL: the superuser ``postgres`` (trust auth), database
        ``postgres`` (a throwaway cluster needs no other)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    async def create(cls) -> PgServer:
        """initdb into a new temporary directory and start the server; raises PgUnavailable."""
        bindir = find_bindir()
        run_as: str | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PgUnavailable(
                    f"running as root, and initdb refuses root: a {SERVER_USER!r} user is "
                    "needed to run PostgreSQL as; create it or run the tests as another user"
                ) from None
            run_as = SERVER_USER
        # Not under pytest's tmp_path: its parent is private to the current user, and the
        # postgres user must reach the data directory.
        root = Path(tempfile.mkdtemp(prefix="loadbell-pg-"))
        server = cls(bindir=bindir, root=root, port=_free_port(), run_as=run_as)
        try:
            server.socket_dir.mkdir()
            if run_as is not None:
                for path in (root, server.socket_dir):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            await server._run(
                "initdb",
                "--pgdata",
                str(server.data_dir),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
            )
            with (server.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(_CONF.format(port=server.port, socket_dir=server.socket_dir))
            await server.start()
        except BaseException:
            await server.destroy()
            raise
        return server

    async def start(self) -> None:
        """Start the server; returns once it accepts connections."""
        await self._ctl("start", "--log", str(self.log_file))
        await self._wait_until(accepting=True)

    async def stop(self) -> None:
        """Fast shutdown (sessions are cut off); returns once connections are refused."""
        await self._ctl("stop", "--mode", "fast")
        await self._wait_until(accepting=False)

    async def destroy(self) -> None:
        """Stop the server if it runs (killing it if it will not stop) and remove its files."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                try:
                    await self._ctl("stop", "--mode", "immediate")
                except Exception:
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The server's log, for failure messages."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"

    async def _ctl(self, action: str, *args: str) -> None:
        await self._run("pg_ctl", action, "--wait", "--pgdata", str(self.data_dir), *args)

    async def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.root,  # one the postgres user may enter
            # The server forked by pg_ctl must not get the test's Ctrl-C.
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), WAIT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(
                f"{tool} {' '.join(args)} did not finish within {WAIT_SECONDS} s\n{self.log()}"
            ) from None
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited with {proc.returncode}:\n"
                f"{out.decode(errors='replace')}\nserver log:\n{self.log()}"
            )

    async def _wait_until(self, *, accepting: bool) -> None:
        """Until a TCP connection to the port is accepted (or refused)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                is_accepting = True
            except OSError:
                is_accepting = False
            if is_accepting == accepting:
                return
            if time.monotonic() > deadline:
                state = "accept" if accepting else "refuse"
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} did not {state} connections within "
                    f"{WAIT_SECONDS} s\n{self.log()}"
                )
            await asyncio.sleep(0.05)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
