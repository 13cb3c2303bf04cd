"""Whatever shape a client gives a run's metrics, every kind renders every event and the
deliveries go out (docs/templates.md#odd-metrics-documents)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from email import message_from_bytes
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import update

from loadbell.channels.apprise import AppriseKind
from loadbell.channels.email import EmailKind
from loadbell.channels.registry import KINDS, KindName
from loadbell.domain.events import EventType
from loadbell.domain.metrics import FIGURES
from loadbell.formats import samples
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import runs
from loadbell.testing import RecordingReceiver
from loadbell.testing.chat import FakeDiscord, FakeTeams
from loadbell.values import Message, OutboundRequest

# The "one body for every event" template of docs/templates.md: it guards missing figures
# with `default`, which is all a template needs once odd figures read as missing.
TEMPLATE = """{
  "event": {{ event | tojson }},
  "project": {{ project.name | tojson if project else "null" }},
{% if run %}
  "run": {"id": {{ run.id }}, "status": {{ run.status_text | tojson }}},
  "requests": {{ metrics.requests | default(0) }},
  "failed": {{ metrics.thresholds | default([]) | rejectattr("ok") | list | length }},
  "checks": {{ metrics.checks | default({}) | tojson }},
{% endif %}
  "text": {{ summary.text | tojson }},
  "facts": {{ summary.facts | tojson }},
  "metrics": {{ metrics | tojson }},
  "extra": {{ extra | tojson }}
}"""

URL = "https://hooks.example.com/T0/B0/secret-token"

# (label, kind, config): one valid config per kind, and each wire format of the webhook kind.
CONFIGS: list[tuple[str, KindName, dict[str, Any]]] = [
    ("webhook/loadimpact", KindName.WEBHOOK, {"url": URL, "format": "loadimpact"}),
    ("webhook/loadimpact-legacy", KindName.WEBHOOK, {"url": URL, "format": "loadimpact-legacy"}),
    ("webhook/loadmance", KindName.WEBHOOK, {"url": URL, "format": "loadmance"}),
    (
        "webhook/template",
        KindName.WEBHOOK,
        {"url": URL, "format": "template", "template": TEMPLATE},
    ),
    ("slack", KindName.SLACK, {"webhook_url": URL}),
    (
        "slack_app",
        KindName.SLACK_APP,
        {
            "targets": "#load-tests",
            "bot_token": "xoxb-1-2-abc",
            "team_id": "T0123",
            "workspace": "Acme",
        },
    ),
    ("hipchat", KindName.HIPCHAT, {"url": URL}),
    ("teams", KindName.TEAMS, {"url": URL}),
    ("discord", KindName.DISCORD, {"url": URL}),
    ("mattermost", KindName.MATTERMOST, {"url": URL}),
    (
        "email",
        KindName.EMAIL,
        {
            "to": ["ops@example.com"],
            "from": "loadbell@example.com",
            "smtp_host": "smtp.example.com",
        },
    ),
    ("apprise", KindName.APPRISE, {"url": "json://hooks.example.com/notify"}),
]

# The metrics documents a careless client can leave on a run (PATCH merges key by key).
ODD_DOCUMENTS: list[tuple[str, Any]] = [
    ("the issue's document", {"rps": "fast", "thresholds": ["x"]}),
    # every figure a word
    ("figures as strings", {key: "n/a" for key in sorted(FIGURES)}),
    # numbers sent as text: not numbers either
    ("numeric strings", {"requests": "1500", "rps": "50.2", "error_rate": "0.01", "vus_max": "10"}),
    ("figures as booleans", {"requests": True, "rps": False, "error_rate": True, "vus_max": True}),
    ("figures as null", {"requests": None, "rps": None, "avg_ms": None, "vus_max": None, "vus": 3}),
    ("figures as objects", {"rps": {"value": 50}, "avg_ms": {}, "p95_ms": {"p": [1, 2]}}),
    ("figures as lists", {"requests": [1500], "rps": [], "duration_s": [300.0]}),
    # what Python's JSON parser turns NaN, Infinity and 1e999 into
    (
        "non-finite floats",
        {"rps": float("nan"), "avg_ms": float("inf"), "duration_s": -float("inf")},
    ),
    # beyond a float's range: float() of it raises OverflowError
    ("an int beyond a float", {"requests": 10**400, "duration_s": 10**400, "vus_max": -(10**400)}),
    # finite but enormous: formats must not overflow when they scale or round
    (
        "huge finite floats",
        {"rps": 1.7e308, "error_rate": 1.7e308, "apdex": 1e300, "duration_s": 1e308},
    ),
    ("a negative zero and tiny numbers", {"rps": -0.0, "error_rate": 5e-324, "avg_ms": -1e-300}),
    ("thresholds as a string", {"thresholds": "p(95)<500"}),
    ("thresholds as an object", {"thresholds": {"metric": "http_req_duration", "ok": False}}),
    ("thresholds as null", {"thresholds": None}),
    ("thresholds as a number", {"thresholds": 3}),
    ("thresholds as a list of strings", {"thresholds": ["p(95)<500", "rate<0.01"]}),
    ("thresholds as a list of everything", {"thresholds": [None, 1, [], "x", True, {}]}),
    ("threshold objects missing keys", {"thresholds": [{}, {"ok": False}, {"metric": "m"}]}),
    (
        "threshold fields of the wrong type",
        {
            "thresholds": [
                {"metric": 42, "expression": ["p(95)", "<", 500], "ok": "false"},
                {"metric": None, "expression": {"x": 1}, "ok": 0},
                {"metric": "http_req_failed", "expression": "rate<0.01", "ok": None},
                {"metric": float("nan"), "expression": True, "ok": 1},
            ]
        },
    ),
    # more than any message lists, each too long for a line: ~400 KB, within the API's 1 MiB
    (
        "many long threshold entries",
        {
            "thresholds": [
                {"metric": "m" * 1000, "expression": "e" * 1000, "ok": i % 2 == 0}
                for i in range(200)
            ]
        },
    ),
    ("checks as a list", {"checks": [10, 0]}),
    ("checks as a string", {"checks": "all passed"}),
    ("checks with odd counts", {"checks": {"passes": "ten", "fails": None, "rate": float("nan")}}),
    # keys loadbell does not know: kept for templates, read by no built-in format
    ("unknown keys", {"p99_ms": "slow", "nested": {"a": [float("nan"), {"b": None}]}, "": 1}),
    ("a long string figure", {"rps": "x" * 100_000, "avg_ms": "\n<b>&</b>\u202e" * 1000}),
    # the document itself is not an object: the API refuses that, rendering does not rely on it
    ("the document is a list", ["rps", 50]),
    ("the document is a string", "fast"),
    ("the document is null", None),
]


def _config(kind_name: KindName, config: dict[str, Any]) -> dict[str, Any]:
    kind = KINDS[kind_name]
    return {**kind.defaults, **kind.validate(config)}


def _message(event: EventType, document: Any) -> Message:
    """The sample of ``event`` (formats/samples.py) with ``document`` wherever a metrics
    document sits: the run's metrics and an intermediate report's snapshot."""
    message = samples.sample_message(event)
    context = copy.deepcopy(dict(message.context))
    if context["run"] is not None:
        context["run"]["metrics"] = copy.deepcopy(document)
    if isinstance(context["extra"].get("report"), dict):
        context["extra"]["report"]["metrics"] = copy.deepcopy(document)
    return Message(
        delivery_id=message.delivery_id,
        event_id=message.event_id,
        event_type=event,
        occurred_at=message.occurred_at,
        context=context,
        public_url=message.public_url,
    )


def _request(kind_name: KindName, message: Message, config: dict[str, Any]) -> OutboundRequest:
    """What the worker would hand over: the HTTP request, or for the kinds that send
    themselves (email, Apprise) what ``send`` hands to the mail server or Apprise."""
    kind = KINDS[kind_name]
    if isinstance(kind, EmailKind | AppriseKind):
        return kind.preview(message, config)
    return kind.render(message, config)


def _is_json(request: OutboundRequest) -> bool:
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip()
    return media == "application/json" or request.method == "APPRISE"


def test_every_kind_has_a_config_here() -> None:
    """The table covers every registered kind, so a new kind is checked too."""
    assert {kind for _, kind, _ in CONFIGS} == set(KINDS)


@pytest.mark.parametrize(
    "document", [c[1] for c in ODD_DOCUMENTS], ids=[c[0] for c in ODD_DOCUMENTS]
)
def test_every_kind_renders_every_event_of_an_odd_document(document: Any) -> None:
    """Every kind renders every event it can express from an odd metrics document: no
    exception, and a JSON body that parses."""
    problems: list[str] = []
    rendered = 0
    for name, kind_name, raw in CONFIGS:
        config = _config(kind_name, raw)
        for event in EventType:
            if event not in KINDS[kind_name].events(config):
                continue
            message = _message(event, document)
            if kind_name is KindName.SLACK_APP:
                message = dataclasses.replace(message, target="#load-tests")
            try:
                request = _request(kind_name, message, config)
            except Exception as exc:
                problems.append(f"{name} {event.value}: {exc.__class__.__name__}: {exc}")
                continue
            rendered += 1
            if _is_json(request):
                try:
                    orjson.loads(request.body)
                except orjson.JSONDecodeError as exc:
                    problems.append(f"{name} {event.value}: invalid JSON ({exc})")
            elif request.method == "SMTP":
                mail = message_from_bytes(request.body)
                if not mail.is_multipart() or not mail["Subject"]:
                    problems.append(f"{name} {event.value}: not a text + HTML message")
            else:
                problems.append(f"{name} {event.value}: a body this test does not check")
    assert problems == [], "\n".join(problems)
    # The two loadimpact formats express 3 events, Loadmance 12 (test.regressed and
    # channel.disabled too), the 9 other configs all of them.
    assert rendered == 2 * 3 + 12 + 9 * len(EventType)


# -- end to end ----------------------------------------------------------------------------

ISSUE_METRICS = {"rps": "fast", "thresholds": ["x"]}


async def _channel(api: httpx.AsyncClient, kind: str, config: dict[str, Any]) -> int:
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": kind,
            "name": f"{kind} channel",
            "config": config,
            "events": ["test.finished"],
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _finished_run(api: httpx.AsyncClient, settings: Settings, result: str) -> int:
    """A run that starts, holds the issue's metrics, then ends.

    The API now refuses such a document (422, tests/api/test_validation.py), but a database
    written by an earlier version still holds them, so they are written to the table directly,
    as that version did, and rendering must still cope."""
    r = await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})
    assert r.status_code == 201, r.text
    run_id = int(r.json()["id"])
    r = await api.patch(f"/runs/{run_id}", json={"status": 2})
    assert r.status_code == 200, r.text
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(runs).where(runs.c.id == run_id).values(metrics=ISSUE_METRICS)
            )
    finally:
        await engine.dispose()
    r = await api.patch(f"/runs/{run_id}", json={"status": 3, "result": result})
    assert r.status_code == 200, r.text
    assert r.json()["metrics"] == ISSUE_METRICS  # read back as stored
    return run_id


async def _settled(
    api: httpx.AsyncClient, channel_ids: list[int], count: int, timeout: float = 30.0
) -> dict[int, list[dict[str, Any]]]:
    """Each channel's deliveries, once it has ``count`` and none is pending."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[int, list[dict[str, Any]]] = {}
        for cid in channel_ids:
            r = await api.get("/deliveries", params={"channel_id": cid})
            assert r.status_code == 200, r.text
            found[cid] = r.json()["items"]
        if all(
            len(v) >= count and all(d["status"] != "pending" for d in v) for v in found.values()
        ):
            return found
        assert time.monotonic() < deadline, f"deliveries still pending: {found}"
        await asyncio.sleep(0.05)


async def test_odd_metrics_still_reach_teams_discord_and_loadmance(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """A run holding {"rps": "fast", "thresholds": ["x"]} gets its Teams, Discord and
    Loadmance deliveries delivered, passed or failed, without the odd figure."""
    async with FakeTeams() as teams, FakeDiscord() as discord, RecordingReceiver() as hook:
        ids = [
            await _channel(api, "teams", {"url": teams.webhook_url()}),
            await _channel(api, "discord", {"url": discord.webhook_url()}),
            await _channel(api, "webhook", {"url": f"{hook.url}/hook", "format": "loadmance"}),
        ]
        # passed: Loadmance's TEST_FINISH reads rps; failed: TEST_FAILED reads thresholds
        await _finished_run(api, settings, "passed")
        await _finished_run(api, settings, "failed")
        found = await _settled(api, ids, 2)
        for cid, deliveries in found.items():
            statuses = [d["status"] for d in deliveries]
            assert statuses == ["succeeded", "succeeded"], (cid, deliveries)
        received = await hook.wait_for(2)
    assert len(teams.accepted) == 2 and len(discord.accepted) == 2  # the fakes' checks passed
    bodies = sorted((r.json() for r in received), key=lambda b: str(b["eventType"]))
    assert [b["eventType"] for b in bodies] == ["TEST_FAILED", "TEST_FINISH"]
    failed, passed = bodies
    assert passed["metadata"]["throughput"] == ""  # "fast" is no figure: left out
    assert failed["message"].endswith("finished with a failed result.")  # no thresholds read
    for payload in [*teams.accepted, *discord.accepted]:
        assert "fast" not in orjson.dumps(payload).decode()
