"""``loadbell`` with tracemalloc on, for ``bench/soak.py --tracemalloc``; not part of loadbell.

    python -m bench.traced_serve serve --port 8000   (as ``python -m loadbell.cli``)

On SIGUSR1 it writes ``snapshot-<n>.pickle`` into ``$LOADBELL_BENCH_TRACE_DIR``: a dict with
the tracemalloc snapshot (``memory``), the count of live objects by type name (``types``)
and the bytes SQLite's own heap holds (``sqlite``), after a full garbage collection so that
only what is still referenced counts.
The handler runs on the main thread between two bytecodes, so it stalls the event loop for
as long as it takes (seconds): a traced run's latency and RSS are not the soak's.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import os
import pickle
import signal
import tracemalloc
from pathlib import Path
from types import FrameType


def _snapshot(signum: int, frame: FrameType | None) -> None:
    folder = Path(os.environ["LOADBELL_BENCH_TRACE_DIR"])
    taken = len(list(folder.glob("snapshot-*.pickle"))) + 1
    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    memory = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, pickle.__file__),
        ]
    )
    partial = folder / f".snapshot-{taken}.tmp"
    with partial.open("wb") as f:
        pickle.dump({"memory": memory, "types": dict(types), "sqlite": _sqlite_heap()}, f)
    partial.rename(folder / f"snapshot-{taken}.pickle")  # whole, or not there


def _sqlite_heap() -> int:
    """Bytes SQLite holds on its own heap in this process (page caches, statements): what
    tracemalloc cannot see. -1 when the library cannot be loaded by name."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return -1
    lib = ctypes.CDLL(name)  # the library _sqlite3 already loaded: the same counters
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def main() -> None:
    # Imported before tracing starts: what importing allocates is not what grows, and
    # tracing it would take a minute on a busy machine.
    import loadbell.app
    from loadbell.cli import main as loadbell

    # Traceback depth kept per allocation: each frame more slows the server down.
    tracemalloc.start(int(os.environ.get("LOADBELL_BENCH_TRACE_FRAMES", "4")))
    signal.signal(signal.SIGUSR1, _snapshot)

    loadbell()


if __name__ == "__main__":
    main()
