"""docs/monitoring.md's recipe, run as written: its k6 script, its cron line's command and
its channel settings, read from the page, with a real k6, a real loadbell server and a
Slack webhook on 127.0.0.1. Five scheduled runs (pass, fail, fail, fail, pass) give exactly
two messages."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadbell.testing.chat import FakeSlackWebhook

from .conftest import LOADBELL_BIN

pytestmark = pytest.mark.slow

PAGE = Path(__file__).parents[2] / "docs" / "monitoring.md"


def _block(language: str) -> str:
    """The page's one code block in ``language``."""
    [found] = re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)
    return str(found)


def _cron_command() -> tuple[dict[str, str], list[str]]:
    """The cron line's environment and ``loadbell`` arguments (after the five schedule
    fields, ``cd ... &&``, and before the output redirection)."""
    [line] = [ln for ln in _block("cron").splitlines() if ln.strip()]
    command = line.split(None, 5)[5]
    words = shlex.split(command.split("&&", 1)[1])
    words = words[: words.index(">>")]
    env = {}
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == "loadbell", words
    return env, words[1:]


async def test_recipe_sends_down_and_recovered_only(
    app_server: Any,
    api: httpx.AsyncClient,
    spawn: Callable[..., Any],
    target: str,
    tmp_path: Path,
) -> None:
    """Five runs of the cron line's command (the target up, down three times, up again)
    give the Slack channel of the recipe exactly two messages: failed, then passed."""
    (tmp_path / "smoke.js").write_text(_block("js"))
    env, args = _cron_command()
    assert set(env) == {"LOADBELL_URL", "LOADBELL_TOKEN", "LOADBELL_PROJECT", "TARGET_URL"}
    assert "--trigger" in args and args[args.index("--trigger") + 1] == "scheduled"

    async with FakeSlackWebhook() as slack:
        channel = json.loads(_block("json"))
        channel["config"]["webhook_url"] = slack.webhook_url()
        r = await api.post("/channels", json=channel)
        assert r.status_code == 201, r.text
        assert r.json()["config"]["notify_on"] == {"mode": "result_change"}

        codes = []
        for path in ("/", "/fail", "/fail", "/fail", "/"):  # up, down x3, up
            run_env = {
                **env,
                "LOADBELL_URL": app_server.url,
                "LOADBELL_TOKEN": app_server.token,
                "TARGET_URL": f"{target}{path}",
            }
            proc = await spawn(LOADBELL_BIN, *args, env=run_env)
            codes.append(await proc.finish(timeout=120))
        assert codes == [0, 99, 99, 99, 0]  # k6's own: 99 when a threshold failed

        items = await _all_ended(api, r.json()["id"])
        sent = [d for d in items if d["status"] == "succeeded"]
        assert len(sent) == 2, items
        assert len(slack.accepted) == 2
        down, recovered = (json.dumps(m) for m in slack.accepted)
        assert "failed" in down.lower() and "passed" in recovered.lower()
        quiet = [d for d in items if d["status"] == "suppressed"]
        assert len(quiet) == 3 and {d["reason"] for d in quiet} == {"notify_on"}
        runs = (await api.get("/runs")).json()["items"]
        assert len(runs) == 5 and {r["trigger"] for r in runs} == {"scheduled"}


async def _all_ended(api: httpx.AsyncClient, channel_id: int) -> list[dict[str, Any]]:
    """The channel's deliveries once there are five and none is pending."""
    for _ in range(400):
        r = await api.get("/deliveries", params={"channel_id": channel_id})
        items: list[dict[str, Any]] = r.json()["items"]
        if len(items) == 5 and all(d["status"] != "pending" for d in items):
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries never all ended: {items}")
