"""Counting a bench child's instructions under ``valgrind --tool=callgrind``, the event loop
only, for the benches that measure what the machine's speed must not move
(``bench.worker_instructions``, ``bench.api_instructions``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click


def require_valgrind() -> None:
    if shutil.which("valgrind") is None:
        raise click.ClickException(
            "valgrind is not installed: install Debian's valgrind package to run this bench"
        )


def counting(module: str, args: list[str], out: Path) -> subprocess.Popen[str]:
    """Start ``python -m module *args`` under callgrind, writing its counts to ``out``."""
    command = [
        "valgrind",
        "--tool=callgrind",
        # Only what runs inside the event loop (uvloop's libuv loop): the interpreter's
        # start-up and the imports are the same in both runs of a pair but not always the
        # same number of instructions (OpenSSL loaded its configuration in some start-ups
        # and not in others, 77 million instructions).
        "--toggle-collect=uv_run",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        module,
        *args,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def instructions(child: subprocess.Popen[str]) -> int:
    """What a child started by :func:`counting` executed, once it ends."""
    _, stderr = child.communicate()
    found = re.search(r"Collected : (\d+)", stderr)
    if child.returncode != 0 or found is None:
        raise click.ClickException(f"the child under valgrind failed:\n{stderr[-3000:]}")
    return int(found.group(1))


def per_unit(
    module: str, children: list[list[str]], sizes: tuple[int, int], out: Path, label: str
) -> tuple[float, dict[int, int]]:
    """Run ``module``'s two children (their arguments; sizes small and large) under
    callgrind at once (an instruction count does not depend on what else runs); the
    instructions per further unit of size, and each count. What both runs share (the
    start-up, the set-up) falls out of the difference."""
    running = [
        counting(module, args, out / f"callgrind.{label}.{size}.out")
        for args, size in zip(children, sizes, strict=True)
    ]
    counts = dict(zip(sizes, [instructions(c) for c in running], strict=True))
    small, large = sizes
    return (counts[large] - counts[small]) / (large - small), counts
