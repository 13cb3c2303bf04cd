"""What one attempt came to: delivered, retry (after N s) or failed (with a reason)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    status_code: int | None = None
    body_excerpt: str | None = None  # first 4 KiB of the response body
    error: str | None = None
    retry_after: float | None = None  # seconds, from the receiver (Retry-After, retry_after)
    duration_ms: float = 0.0
    request_url: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)  # already masked

    @property
    def delivered(self) -> bool:
        return self.verdict is Verdict.DELIVERED
