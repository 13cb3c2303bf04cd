"""serve's worker process counts as running only once it says it is ready (D72): until then
/healthz says "starting", and wake-ups still reach it. A real child process stands in for
``loadbell.cli.worker_child``: it reads the header as that module does, says ready when the
test lets it, and records the wake-up bytes it reads."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from conftest import until
from loadbell.delivery import child
from loadbell.delivery.child import RUNNING, STARTING, WorkerChild
from loadbell.settings import Settings

STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    here = Path(os.environ["STAND_IN_DIR"])
    fd = sys.stdin.fileno()
    data = b""
    while b"\\n" not in data:
        data += os.read(fd, 65536)
    line, _, pokes = data.partition(b"\\n")
    header = json.loads(line)
    os.set_blocking(fd, False)

    def read_pokes():
        global pokes
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return True
        if not chunk:
            return False  # serve is gone
        pokes += chunk
        (here / "pokes").write_bytes(pokes)
        return True

    while not (here / "go").exists():
        if not read_pokes():
            sys.exit(0)
        time.sleep(0.01)
    os.write(header["ready_fd"], b"\\x01")
    os.close(header["ready_fd"])
    while read_pokes():
        time.sleep(0.01)
    """
)


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "stand_in_worker.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # -P leaves PYTHONPATH in effect
    monkeypatch.setenv("STAND_IN_DIR", str(tmp_path))
    monkeypatch.setattr(child, "CHILD_MODULE", "stand_in_worker")
    return tmp_path


async def test_the_worker_process_runs_once_it_says_it_is_ready(
    stand_in: Path, tmp_path: Path
) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    worker = WorkerChild(settings)
    await worker.start()
    try:
        await asyncio.sleep(0.3)  # time enough to start; it waits for "go"
        assert worker.state == STARTING and not worker.running and worker.pid is None

        worker.poke()  # a delivery staged while it starts: its first claim may miss it
        await until(lambda: (stand_in / "pokes").exists(), "the wake-up reached the child")

        (stand_in / "go").touch()
        await until(lambda: worker.running, "running once ready")
        assert worker.state == RUNNING and worker.pid is not None
    finally:
        await worker.stop()


async def test_a_worker_process_that_exits_before_it_is_ready_never_runs(
    stand_in: Path, tmp_path: Path
) -> None:
    """Its ready pipe closes without a byte (here it closes it, then exits a second later):
    it stays "starting", and is restarted once it exits."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    (stand_in / "stand_in_worker.py").write_text(
        "import json, os, sys, time\n"
        "header = json.loads(sys.stdin.readline())\n"
        "os.close(header['ready_fd'])\n"
        "time.sleep(1.0)\n"
        "sys.exit(3)\n"
    )
    worker = WorkerChild(settings)
    await worker.start()
    try:
        await asyncio.sleep(0.5)  # its ready pipe is closed by now, the process still runs
        assert worker.state == STARTING and not worker.running
        await until(lambda: worker.state != STARTING, "noticed the exit")
        assert not worker.running and worker.state == child.RESTARTING
    finally:
        await worker.stop()
