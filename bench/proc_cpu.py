"""CPU seconds of a process and all its descendants, from ``/proc`` (Linux).

A process's ``utime + stime`` plus ``cutime + cstime`` (its children that have ended and
been waited for), summed over the live descendants as well: whether ``loadbell serve``
runs its worker in the same process or in a child, the figure covers both.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")  # clock ticks per second


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # it ended meanwhile
        return None
    # The command name is in parentheses and may hold spaces: split after the last ")".
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds used by ``pid`` and its descendants so far, ended children included."""
    ticks = 0
    for p in [pid, *descendants(pid)]:
        fields = _stat(p)
        if fields is not None:  # fields[11:15]: utime, stime, cutime, cstime
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / _TICK


def own_cpu(pid: int) -> float:
    """CPU seconds used by ``pid`` alone (no descendants, live or ended)."""
    fields = _stat(pid)
    return sum(int(v) for v in fields[11:13]) / _TICK if fields is not None else 0.0
