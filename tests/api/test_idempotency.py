"""POST /runs with an Idempotency-Key: a repeat gets the first run, never a second one."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import Server
from loadbell.domain.roles import Role
from loadbell.security.secretbox import SecretBox
from loadbell.services import runs as run_service
from loadbell.services.access import Principal
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import idempotency_keys

from .support import assert_error, list_events, scoped_token, set_status, stored_rows

CREATE = {"project_id": 1, "load_test_name": "checkout"}


def key_header(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_a_repeat_with_the_same_key_gets_the_same_run(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """The first request is a 201; the repeat is a 200 with the same run as it is now,
    marked Idempotent-Replayed, with no second run and no second load_test.created event."""
    key = str(uuid.uuid4())
    first = await api.post("/runs", json=CREATE, headers=key_header(key))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    run = first.json()
    events = await list_events(api)
    await set_status(api, run["id"], 1)

    again = await api.post("/runs", json=CREATE, headers=key_header(key))
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == run["id"]
    assert again.json()["status"] == 1  # the run as it is now
    counts = await stored_rows(settings)
    assert counts["runs"] == 1 and counts["load_tests"] == 1
    assert [e["type"] for e in events] == ["load_test.created"]
    assert sorted(e["type"] for e in await list_events(api)) == [
        "load_test.created",
        "test.starting",
    ]


async def test_other_keys_and_no_key_make_new_runs(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """Each new key, and each request without one, makes a run of its own."""
    ids = set()
    for headers in (key_header("a"), key_header("b"), {}, {}):
        r = await api.post("/runs", json=CREATE, headers=headers)
        assert r.status_code == 201, r.text
        ids.add(r.json()["id"])
    assert len(ids) == 4 and (await stored_rows(settings))["runs"] == 4


@pytest.mark.parametrize(
    "other",
    [
        {"project_id": 1, "load_test_name": "search"},  # another load test
        {**CREATE, "trigger": "scheduled"},  # another trigger
    ],
)
async def test_the_same_key_for_another_request_is_refused(
    api: httpx.AsyncClient, settings: Settings, other: dict[str, object]
) -> None:
    """A key already used for other fields is a 422 naming the header; nothing is stored."""
    assert (await api.post("/runs", json=CREATE, headers=key_header("k1"))).status_code == 201
    before = await stored_rows(settings)
    r = await api.post("/runs", json=other, headers=key_header("k1"))
    body = assert_error(r, 422, "Idempotency-Key")
    assert body["error"] == "idempotency_key_reused"
    assert "send a new key" in body["message"]
    assert await stored_rows(settings) == before


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # empty
        b"   ",  # only spaces: the server trims them, leaving nothing
        b"k" * 256,  # longer than 255
        "cl\u00e9".encode("latin-1"),  # not ASCII
        b"a\tb",  # a tab: not printable (other control characters are the server's 400)
    ],
)
async def test_a_malformed_key_is_refused(
    app_server: Server, settings: Settings, raw: bytes
) -> None:
    """A key that is not 1 to 255 printable ASCII characters is a 422 naming the header,
    and nothing is stored."""
    before = await stored_rows(settings)
    status, body = await _raw_create(app_server, b"Idempotency-Key: " + raw)
    assert status == 422, body
    assert body["field"] == "Idempotency-Key" and body["error"] == "invalid", body
    assert "printable ASCII" in body["message"]
    assert await stored_rows(settings) == before


async def _raw_create(server: Server, header: bytes) -> tuple[int, dict[str, Any]]:
    """POST /runs with one header line as given, byte for byte (HTTP clients refuse to
    send some of them); the status and the JSON body."""
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps(CREATE).encode()
    head = (
        f"POST /api/v1/runs HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {server.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + header + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


async def test_a_key_of_255_printable_characters_is_accepted(api: httpx.AsyncClient) -> None:
    """The longest key, with spaces and punctuation inside, is accepted and works."""
    key = ("a b~!" * 51)[:255]
    first = await api.post("/runs", json=CREATE, headers=key_header(key))
    again = await api.post("/runs", json=CREATE, headers=key_header(key))
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["id"] == again.json()["id"]


async def test_keys_belong_to_an_organization(
    app_server: Server, api: httpx.AsyncClient, settings: Settings
) -> None:
    """The same key in another organization is another key: it makes a run there."""
    org = await api.post("/organizations", json={"name": "Other"})
    assert org.status_code == 201, org.text
    token = await scoped_token(settings, org.json()["id"], Role.OWNER)
    here = await api.post("/runs", json=CREATE, headers=key_header("shared"))
    async with app_server.client(token) as other:
        project = await other.post(
            "/projects", json={"organization_id": org.json()["id"], "name": "Other project"}
        )
        assert project.status_code == 201, project.text
        there = await other.post(
            "/runs",
            json={"project_id": project.json()["id"], "load_test_name": "checkout"},
            headers=key_header("shared"),
        )
    assert (here.status_code, there.status_code) == (201, 201), there.text
    assert here.json()["id"] != there.json()["id"]


async def test_concurrent_requests_with_one_key_make_one_run(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """Eight requests with one key sent at once: one 201, seven 200s, all with one run."""
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(api.post("/runs", json=CREATE, headers=key_header(key)) for _ in range(8))
    )
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    counts = await stored_rows(settings)
    assert (counts["runs"], counts["load_tests"], counts["idempotency_keys"]) == (1, 1, 1)


@pytest.mark.parametrize("first_commits", [True, False])
async def test_a_request_waits_for_a_transaction_holding_its_key(
    api: httpx.AsyncClient, settings: Settings, first_commits: bool
) -> None:
    """While another transaction has claimed the key, a request with it waits; it gets that
    transaction's run when it commits (200), or makes the run itself when it rolls back
    (201). Either way there is one run."""
    if settings.is_sqlite:
        pytest.skip("SQLite serialises write transactions (BEGIN IMMEDIATE): none waits on a key")
    key = str(uuid.uuid4())
    engine = create_engine(settings)
    try:
        conn = await engine.connect()
        await conn.begin()
        made = await run_service.new_run(
            conn,
            SecretBox("test-secret-key"),
            Principal(1, "owner", 1, None, {1: Role.OWNER}),  # the seeded owner
            load_test_id=None,
            project_id=1,
            load_test_name="checkout",
            trigger="manual",
            public_url="http://loadbell.test",
            idempotency_key=key,
        )
        request = asyncio.create_task(api.post("/runs", json=CREATE, headers=key_header(key)))
        await _until_waiting_for_a_lock(settings, request)
        if first_commits:
            await conn.commit()
        else:
            await conn.rollback()
        await conn.close()
        answer = await request
    finally:
        await engine.dispose()
    assert answer.status_code == (200 if first_commits else 201), answer.text
    if first_commits:
        assert answer.json()["id"] == made.run["id"]
    assert (await stored_rows(settings))["runs"] == 1


async def test_an_expired_key_is_free_again_and_expired_rows_are_swept(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """Once its 24 h are over, a key makes a new run, and claiming any key deletes the
    other expired ones."""
    first = await api.post("/runs", json=CREATE, headers=key_header("old"))
    other = await api.post("/runs", json=CREATE, headers=key_header("other-old"))
    assert (first.status_code, other.status_code) == (201, 201)
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(idempotency_keys).values(expires_at=time.time() - 1))
    finally:
        await engine.dispose()
    again = await api.post("/runs", json=CREATE, headers=key_header("old"))
    assert again.status_code == 201, again.text
    assert again.json()["id"] != first.json()["id"]
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            keys = (await conn.execute(sa.select(idempotency_keys.c.key))).scalars().all()
    finally:
        await engine.dispose()
    assert keys == ["old"]  # "other-old" expired and was swept


async def _until_waiting_for_a_lock(
    settings: Settings, request: asyncio.Task[httpx.Response]
) -> None:
    """Return once a PostgreSQL backend of the test's database waits on a lock (the
    request, on the key's unique index)."""
    engine = create_engine(settings)
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                if (await conn.execute(query)).scalar_one():
                    return
            assert not request.done(), request.result().text
            await asyncio.sleep(0.02)
    finally:
        await engine.dispose()
    raise AssertionError("the request never waited for the key's lock")
