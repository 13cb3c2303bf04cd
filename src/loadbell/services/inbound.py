"""Inbound sources: another service's webhooks, posted to a secret URL, become runs.

The one kind today is ``k6cloud``: Grafana Cloud k6's notification webhook with its default
"Generic" template (docs/integrations.md, "From Grafana Cloud k6"). Its event identifier,
status, result and trigger are read back with the table that writes them
(``domain/k6cloud.py: state_of``), and the run then moves exactly as ``PATCH /runs`` moves
it: the same events, so the project's channels, overrides, retries and delivery log apply.

Repeats are harmless by the run's own history: a start of a run that is already Running or
past it, and an end of a run that has ended the same way, change nothing and stage no event
(Grafana retries a delivery it thinks failed, with the same ``X-k6cloud-ID``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain import k6cloud
from loadbell.domain.events import EventType
from loadbell.domain.statuses import TransitionError
from loadbell.security.secretbox import SecretBox
from loadbell.services import access, load_tests, runs
from loadbell.services.access import Principal
from loadbell.services.errors import Invalid, NotFound, conflict, invalid, not_found
from loadbell.store import inbound
from loadbell.store.outbox import Handoff

KINDS = ("k6cloud",)

# The receiving path (api/inbound.py); the token is its last part.
RECEIVE_PATH = "/api/v1/inbound/{kind}/{token}"


def url_of(public_url: str, kind: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{RECEIVE_PATH.format(kind=kind, token=token)}"


async def create_source(
    conn: AsyncConnection,
    principal: Principal,
    *,
    project_id: int,
    kind: str,
    name: str | None,
    public_url: str,
) -> dict[str, Any]:
    """A new source of ``project_id`` (owners and admins), with its URL: the only time the
    token in it is shown."""
    if kind not in KINDS:
        raise invalid("kind", f"{kind!r} is not an inbound source kind; use one of: {KINDS}")
    try:
        project = await access.project(conn, principal, project_id)
    except NotFound:
        raise invalid(
            "project_id", f"there is no project {project_id} you can see; give one of yours"
        ) from None
    principal.require_manage(project.organization_id, "create inbound sources")
    row, token = await inbound.add_source(
        conn,
        organization_id=project.organization_id,
        project_id=project.id,
        kind=kind,
        name=name or "Grafana Cloud k6",
        user_id=principal.user_id,
    )
    return {**row, "url": url_of(public_url, kind, token)}


async def list_sources(
    conn: AsyncConnection, principal: Principal, project_id: int
) -> list[dict[str, Any]]:
    """A project's live sources, without their tokens (only their hashes are kept)."""
    await access.project(conn, principal, project_id)
    return await inbound.list_sources(conn, project_id)


async def delete_source(conn: AsyncConnection, principal: Principal, source_id: int) -> None:
    """Revoke a source: its URL answers 404 from now on; the runs it made stay."""
    access.known_id("inbound source", source_id)
    row = await inbound.live_source(conn, source_id)
    if row is None or row["organization_id"] not in principal.roles:
        raise not_found("inbound source", source_id)
    principal.require_manage(row["organization_id"], "delete inbound sources")
    await inbound.revoke_source(conn, source_id)


@dataclass(frozen=True)
class K6CloudHook:
    """The values of a Generic-template body that loadbell uses (the rest is ignored)."""

    test_id: int  # test_run.id
    name: str  # test_run.name: the load test's name
    url: str  # test_run.link
    load_test_id: int  # test_run.load_test_id
    load_test_url: str  # test_run.load_test_link
    was_scheduled: bool  # test_run.was_scheduled: "yes" / "no"
    user_name: str  # test_run.user_name
    event_id: str  # event.id
    event_type: str  # event.type: the full identifier
    status: int
    result: int


@dataclass(frozen=True)
class Received:
    run_id: int | None  # None for Grafana's "Send test event"
    load_test_id: int | None
    event: str  # the identifier received
    changed: bool  # False: a repeat, or a start after the end; nothing was staged
    deliveries: list[int]  # staged; hand them to the worker after the commit
    new_load_test: bool  # its load_test.created event has deliveries to wake workers for


def _unknown_source() -> NotFound:
    # The same answer for a wrong, revoked or never-issued token: no hint which.
    return NotFound("no inbound source has this URL; create one with POST /inbound-sources")


async def receive_k6cloud(
    conn: AsyncConnection,
    box: SecretBox,
    token: str,
    hook: K6CloudHook,
    *,
    public_url: str,
    handoff: Handoff | None = None,
) -> Received:
    """Apply one Grafana Cloud k6 webhook to the source's project."""
    source = await inbound.source_by_token(conn, token, "k6cloud")
    if source is None:
        raise _unknown_source()
    if hook.event_type == k6cloud.ANY_EVENT:
        # Grafana's "Send test event" (event.type "<any>", mock values): the URL works;
        # there is no run to make.
        return Received(None, None, hook.event_type, False, [], False)
    try:
        state = k6cloud.state_of(hook.event_type, hook.status, hook.result, hook.was_scheduled)
    except k6cloud.Mismatch as exc:
        raise Invalid(str(exc), exc.field) from None
    # Serialises the deliveries of one project (PostgreSQL; SQLite's BEGIN IMMEDIATE already
    # does), so a start and an end of a new run arriving together make one run, not two.
    if not await inbound.lock_project(conn, source["project_id"]):
        raise _unknown_source()  # the project was deleted
    known = await inbound.run_of(conn, source["id"], hook.test_id)
    new_load_test = False
    if known is not None:
        run_id, lt_id = known
    else:
        earlier = await inbound.load_test_of(conn, source["id"], hook.load_test_id)
        if earlier is not None:
            lt_id = earlier
        else:
            found = await load_tests.find_by_name(conn, source["project_id"], hook.name)
            new_load_test = found is None
            lt_id = (
                int(found.id)
                if found
                else await load_tests.add(conn, box, source["project_id"], hook.name)
            )
        run_id = await runs.insert_run(
            conn,
            load_test_id=lt_id,
            project_id=source["project_id"],
            organization_id=source["organization_id"],
            trigger=state.trigger.value,
            user_id=source["user_id"],
        )
        await inbound.link_run(
            conn,
            source_id=source["id"],
            external_id=hook.test_id,
            external_load_test_id=hook.load_test_id,
            run_id=run_id,
            url=hook.url,
            load_test_url=hook.load_test_url,
        )
    extra = {
        "grafana": {
            "test_run_id": hook.test_id,
            "url": hook.url,
            "load_test_id": hook.load_test_id,
            "load_test_url": hook.load_test_url,
            "user_name": hook.user_name,
            "event_id": hook.event_id,
            "event_type": hook.event_type,
        }
    }
    try:
        changed, new = await runs.advance_run(
            conn,
            box,
            run_id,
            status=state.status,
            result=state.result,
            public_url=public_url,
            handoff=handoff,
            extra=extra,
        )
    except TransitionError as exc:
        if state.event is EventType.TEST_STARTED:
            changed, new = False, []  # the end came first (deliveries are not ordered)
        else:
            raise conflict(
                f"{exc} (Grafana test run {hook.test_id} already ended otherwise here)", "status"
            ) from None
    return Received(run_id, lt_id, hook.event_type, changed, new, new_load_test)
