"""``serve``'s delivery worker in a process of its own (``serve --worker process``, the default):
the parent's side, which starts, wakes, watches, restarts and stops it.

The API and the worker on one event loop compete for it in bursts: admission then refuses
PATCHes for loop lag while the machine still has CPU, and under a CPU hog the worker gets
what the API leaves. As two processes the kernel schedules them, and each has a core when
there are two (docs/decisions.md, D59).

The parent (:class:`WorkerChild`, in ``serve``'s loop):

- starts the child from the app's start-up, once the database is prepared and before
  uvicorn serves, and restarts it with a capped backoff when it exits unexpectedly;
- counts it as running only once it says it is ready: until then (imports, the schema and
  key checks, about a second) ``/healthz`` says ``starting``, so that what waits for a
  healthy ``serve`` (a readiness probe, a bench) does not take the child's start-up for
  delivery latency (D72);
- passes it the settings as JSON on its stdin (never on a command line: they hold the
  secret key), then keeps that pipe open: each byte written later is a wake-up (a delivery
  was staged), and EOF means ``serve`` is gone, so the child stops by itself even when
  ``serve`` was killed with SIGKILL;
- stops it from the app's shutdown, after uvicorn's graceful stop: SIGTERM, a wait of at
  most 2 x ``lease_seconds`` (the attempts under way, then their results, each bounded by
  the lease in ``Worker.run``), then SIGKILL (what a killed worker held goes out again
  once its liveness lapses);
- reads its metrics from a Unix socket in a private directory, for ``serve``'s /metrics.

The child (``cli/worker_child.py``, run as ``python -m loadbell.cli.worker_child``) is
``loadbell worker``'s code (``cli/server.py: _work``) with those three links to its parent.
It runs in a session of its own, so a Ctrl-C in a terminal reaches ``serve`` only, which
then stops it in order. Its log lines go to the same stderr, in the same form.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile

import aiohttp
import orjson

from loadbell.settings import Settings

log = logging.getLogger("loadbell.worker")

# What /healthz says of the worker process.
STARTING = "starting"  # spawned, not ready yet
RUNNING = "running"
RESTARTING = "restarting"
STOPPED = "stopped"

# Seconds before a restart: doubled after each exit, up to the cap; back to the first
# once a child has run for STEADY seconds.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
STEADY = 60.0
SCRAPE_TIMEOUT = 2.0  # seconds the child's metrics may take before a scrape goes without
CHILD_MODULE = "loadbell.cli.worker_child"  # what the child runs (python -m)


class WorkerChild:
    """The worker process of one ``serve``: started, watched, restarted, stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dir: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._poke_due = False
        self._ready_fd: int | None = None  # the read end of the child's ready pipe
        self.state = STOPPED

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self.running else None

    @property
    def running(self) -> bool:
        return self.state == RUNNING and self._alive

    @property
    def _alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def metrics_path(self) -> str:
        assert self._dir is not None, "start() first"
        return os.path.join(self._dir, "metrics.sock")

    async def start(self) -> None:
        # Only this user may reach the socket in it (mkdtemp makes it 0700): no token needed.
        self._dir = tempfile.mkdtemp(prefix="loadbell-worker-")
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="loadbell-worker-child")

    async def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):  # the socket of the child before
            os.unlink(self.metrics_path)
        self._stop_listening()
        # The child writes a byte on this pipe once it is ready, and nothing else.
        ready, ready_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # not the working directory on sys.path: loadbell as serve imported it
                "-m",
                CHILD_MODULE,
                stdin=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=(ready_w,),
            )
        except BaseException:
            os.close(ready)
            raise
        finally:
            os.close(ready_w)
        assert proc.stdin is not None
        header = {
            "settings": self.settings.model_dump(mode="json"),
            "metrics": self.metrics_path,
            "ready_fd": ready_w,
        }
        proc.stdin.write(orjson.dumps(header) + b"\n")
        self._proc = proc
        self.state = STARTING
        self._ready_fd = ready
        os.set_blocking(ready, False)
        asyncio.get_running_loop().add_reader(ready, self._on_ready)
        log.info("the delivery worker runs in process %d", proc.pid)

    def _on_ready(self) -> None:
        """The current child wrote on its ready pipe, or closed it (it exited). A respawn
        stops listening to the pipe of the child before it, so this is the current one's."""
        if self._ready_fd is None:  # stopped listening within this turn of the loop
            return
        try:
            said = os.read(self._ready_fd, 64)
        except BlockingIOError:
            return
        self._stop_listening()
        if said and self.state == STARTING:  # not an exit the supervisor already saw
            self.state = RUNNING

    def _stop_listening(self) -> None:
        fd, self._ready_fd = self._ready_fd, None
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_DELAY
        while True:
            assert self._proc is not None
            started = loop.time()
            status = await self._proc.wait()
            if self._stopping:
                return
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self.state = RESTARTING
            if loop.time() - started >= STEADY:
                delay = FIRST_DELAY
            log.error(
                "the delivery worker process %d exited with status %d; restarting it in %.1f s",
                self._proc.pid,
                status,
                delay,
            )
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                try:
                    await self._spawn()
                    break
                except OSError as exc:  # e.g. out of processes: try again after the next delay
                    log.error("cannot start the delivery worker process: %s", exc)

    def poke(self) -> None:
        """A delivery was staged: wake the child (one byte per turn of the loop at most).
        A child still starting gets it too: its first claim may come before this commit."""
        if not self._poke_due and self._alive:
            self._poke_due = True
            asyncio.get_running_loop().call_soon(self._send_poke)

    def _send_poke(self) -> None:
        self._poke_due = False
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        # Something still buffered here means the pipe is full of unread pokes: one more
        # adds nothing.
        if proc.stdin.transport.get_write_buffer_size() == 0:
            proc.stdin.write(b"\x01")

    async def scrape(self) -> bytes | None:
        """The child's metrics, or None when it is not running or does not answer."""
        if not self.running:
            return None
        connector = aiohttp.UnixConnector(path=self.metrics_path)
        try:
            async with (
                asyncio.timeout(SCRAPE_TIMEOUT),
                aiohttp.ClientSession(connector=connector) as session,
                session.get("http://worker/metrics") as response,
            ):
                response.raise_for_status()
                return await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("metrics: the worker process did not answer: %s", exc or type(exc).__name__)
            return None

    async def stop(self) -> None:
        """SIGTERM, a bounded wait for the child to finish its attempts and write their
        results, then SIGKILL."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            # The worker waits up to a lease for its attempts, then up to another for
            # their results (Worker.run): the same bound as docs/deploy.md's stop time.
            grace = 2 * self.settings.lease_seconds
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning(
                    "the delivery worker process %d did not stop in %.0f s; killing it",
                    proc.pid,
                    grace,
                )
                proc.kill()
                await proc.wait()
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        self._stop_listening()
        self.state = STOPPED
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
