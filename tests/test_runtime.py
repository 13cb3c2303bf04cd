"""Process-wide set-up of long-running processes (runtime.py)."""

from __future__ import annotations

import subprocess
import sys


def test_settle_heap_freezes_start_up_objects_and_collects_less_often() -> None:
    # In a process of its own: it changes the collector for the rest of the process.
    code = (
        "import gc; from loadbell.runtime import GC_THRESHOLD, settle_heap; "
        "before = gc.get_freeze_count(); settle_heap(); "
        "print(before, gc.get_freeze_count() > 1000, gc.get_threshold()[0] == GC_THRESHOLD)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["0", "True", "True"]
