"""Exact Apdex from every request, for the k6 wrapper and the Locust plugin.

Apdex_T = (satisfied + tolerating / 2) / total, where for a threshold T (ms):

- satisfied: the request succeeded and took at most T;
- tolerating: it succeeded and took more than T, at most 4 T;
- frustrated: it took more than 4 T, **or it failed** (whatever its duration: a fast 500
  is not a satisfied user).

Worked example, T = 500 ms: 80 fast successes, 10 successes of 1.2 s, 10 failures →
(80 + 10 / 2) / 100 = 0.85.

Counts add up, so workers can ship theirs (``counts()``) and a master can ``merge`` them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Apdex:
    t_ms: float
    satisfied: int = 0
    tolerating: int = 0
    frustrated: int = 0

    def add(self, duration_ms: float, failed: bool = False) -> None:
        if failed or duration_ms > 4 * self.t_ms:
            self.frustrated += 1
        elif duration_ms > self.t_ms:
            self.tolerating += 1
        else:
            self.satisfied += 1

    @property
    def total(self) -> int:
        return self.satisfied + self.tolerating + self.frustrated

    def score(self) -> float | None:
        """The index, rounded to 4 places; ``None`` before the first request."""
        if not self.total:
            return None
        return round((self.satisfied + self.tolerating / 2) / self.total, 4)

    def counts(self) -> dict[str, int]:
        return {
            "satisfied": self.satisfied,
            "tolerating": self.tolerating,
            "frustrated": self.frustrated,
        }

    def merge(self, counts: Mapping[str, int]) -> None:
        self.satisfied += int(counts.get("satisfied", 0))
        self.tolerating += int(counts.get("tolerating", 0))
        self.frustrated += int(counts.get("frustrated", 0))

    def reset(self) -> None:
        self.satisfied = self.tolerating = self.frustrated = 0

    def metrics(self) -> dict[str, float]:
        """The ``apdex`` and ``apdex_t_ms`` keys of the metrics document (empty if no data)."""
        score = self.score()
        return {} if score is None else {"apdex": score, "apdex_t_ms": self.t_ms}
