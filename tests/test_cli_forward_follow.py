"""``loadbell forward --follow`` catches a delivery whose transaction committed after one
with a higher id (ids are given at staging, visibility at commit): a scripted delivery log
stands in for the API, since a real server cannot be made to commit in a chosen order."""

from __future__ import annotations

from typing import Any

import pytest

from loadbell.cli import forward


class ScriptedLog:
    """Answers GET /deliveries with the ids visible at each poll, newest first."""

    def __init__(self, polls: list[list[int]]) -> None:
        self.polls = polls
        self.reads = 0

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        assert path == "/deliveries"
        if self.reads >= len(self.polls):
            raise EOFError  # the script is over: stop following
        ids = sorted(self.polls[self.reads], reverse=True)
        self.reads += 1
        items = [{"id": i, "event_type": "test.finished", "status": "succeeded"} for i in ids]
        return 200, {"items": items, "next_before_id": None}


class Recorder:
    def __init__(self) -> None:
        self.forwarded: list[int] = []

    async def forward(self, item: dict[str, Any]) -> None:
        self.forwarded.append(item["id"])


async def test_a_late_commit_with_a_lower_id_is_forwarded_once() -> None:
    """Ids 1-4 were there; 6 shows up, then 5 (committed late), then nothing new: 6 and 5
    are forwarded once each, nothing that was there is."""
    log = ScriptedLog([[1, 2, 3, 4, 6], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    recorder = Recorder()
    with pytest.raises(EOFError):
        await forward._follow(log, recorder, None, 0.0, {1, 2, 3, 4})  # type: ignore[arg-type]
    assert recorder.forwarded == [6, 5]
