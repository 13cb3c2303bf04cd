"""The SSRF guard as `loadbell serve` runs by default: private targets are refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.support import all_done, create_webhook, new_run, set_status, wait_deliveries
from loadbell.settings import Settings
from loadbell.testing import RecordingReceiver


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """The shared test settings without --allow-private-targets."""
    return Settings(
        database_url=db_url,
        secret_key="test-secret-key",
        secret_key_file=tmp_path / "unused.key",
        allow_private_targets=False,
        public_url="http://loadbell.test",
    )


async def test_private_targets_are_refused_with_the_way_out(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A channel pointing at 127.0.0.1 or `localhost` fails at once, never retried, and both
    the test hook and the attempt log name --allow-private-targets."""
    literal = await create_webhook(api, f"{receiver.url}/hook", retry={"base_delay": 0.05})
    r = await api.post(f"/channels/{literal['id']}/test")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["ok"], body["outcome"], body["response_status"]) == (False, "failed", None)
    assert "--allow-private-targets" in body["error"]

    await create_webhook(api, f"http://localhost:{receiver.port}/hook", retry={"base_delay": 0.05})
    run = await new_run(api)
    await set_status(api, run["id"], 2)
    items = await wait_deliveries(api, lambda i: len(i) == 2 and all_done(i), run_id=run["id"])
    for d in items:
        assert (d["status"], d["attempt_count"]) == ("failed", 1), d
        assert "LOADBELL_ALLOW_PRIVATE_TARGETS=1" in d["last_error"]
    assert "localhost" in items[1]["last_error"]
    assert receiver.requests == []
