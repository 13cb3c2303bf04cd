"""Inbound sources: the API edge of ``services/inbound.py``.

``/inbound-sources`` is managed with a token, like every resource. ``POST
/inbound/k6cloud/{token}`` is public: the token in its path is the credential, so Grafana
Cloud k6 can post to it with no header of loadbell's. Its body is what Grafana's default
"Generic" webhook template renders (docs/wire-formats.md, "k6cloud"); fields loadbell does
not use are accepted and ignored, so a body with more of Grafana's fields still goes in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from loadbell.api.auth import current_principal
from loadbell.api.models import Id, Name
from loadbell.api.responses import BODY, COMMON, errors, ok
from loadbell.api.state import AppState, get_state
from loadbell.domain import k6cloud
from loadbell.domain.text import one_line
from loadbell.services import inbound
from loadbell.services.access import Principal
from loadbell.store.db import transaction

router = APIRouter(tags=["inbound sources"], responses=COMMON)
# The receiving endpoint takes no bearer token: no 401.
public = APIRouter(tags=["inbound sources"], responses=errors(422, 500, 503))

# A link or a free text of Grafana's: one line (PostgreSQL refuses a NUL in text).
Text = Annotated[str, Field(max_length=2000), AfterValidator(one_line)]
# Grafana's ids: positive, and within a BIGINT.
GrafanaId = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: Id
    kind: Literal["k6cloud"] = Field(description="the sender: k6cloud (Grafana Cloud k6)")
    name: Name | None = None


class SourceOut(BaseModel):
    id: int
    organization_id: int
    project_id: int
    kind: str
    name: str
    created_at: datetime


class SourceCreated(SourceOut):
    url: str = Field(
        description="where the sender posts its webhooks; the token in it is shown only "
        "here (loadbell keeps its hash). DELETE the source to revoke it."
    )


class SourceList(BaseModel):
    items: list[SourceOut]


class GrafanaTestRun(BaseModel):
    """Grafana's Generic template's ``test_run`` object."""

    model_config = ConfigDict(extra="allow")
    name: Name = Field(description="test.name: the load test's name")
    id: GrafanaId = Field(description="test.id: the test run; a start and an end share it")
    link: Text = Field(description="test.url: the run in Grafana Cloud k6")
    load_test_id: GrafanaId
    load_test_link: Text
    project_id: GrafanaId | None = None
    organization_id: GrafanaId | None = None
    user_id: GrafanaId | None = None
    user_name: Text = ""
    user_avatar: Text = ""
    was_scheduled: Literal["yes", "no"]
    test_started: Text = ""
    test_ended: Text = ""


class GrafanaEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: Text = Field(description="Grafana's unique hash for this event")
    type: Text = Field(
        description=f"one of: {', '.join(k6cloud.IDENTIFIERS)}, or {k6cloud.ANY_EVENT} "
        "(Grafana's Send test event)"
    )
    text: Text = ""


class K6CloudWebhookIn(BaseModel):
    """What Grafana Cloud k6's default Generic webhook template renders."""

    model_config = ConfigDict(extra="allow")
    text: Text = ""
    test_run: GrafanaTestRun
    event: GrafanaEvent
    status: StrictInt = Field(description="test.status: seed 000's run status code")
    status_text: Text = ""
    result: StrictInt = Field(description="test.result: 0 passed, 1 failed")
    result_text: Text = ""
    color: Text = ""
    errors: list[Any] = []


class Received(BaseModel):
    run_id: int | None = Field(description="the run; null for Grafana's test event (<any>)")
    load_test_id: int | None
    event: str = Field(description="the event identifier received")
    changed: bool = Field(
        description="false for a repeat (Grafana's retry), a start after the end, or the "
        "test event: nothing was changed and no notification was staged"
    )


@router.post(
    "/inbound-sources",
    status_code=201,
    response_model=None,
    responses={**ok(SourceCreated, 201, "The source, with its URL (shown once)"), **BODY},
)
async def create_source(
    body: SourceIn,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        return await inbound.create_source(
            conn,
            principal,
            project_id=body.project_id,
            kind=body.kind,
            name=body.name,
            public_url=state.settings.base_url,
        )


@router.get(
    "/inbound-sources",
    response_model=None,
    responses={**ok(SourceList, 200, "The project's sources, without tokens"), **errors(404)},
)
async def list_sources(
    project_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    async with state.reader.connect() as conn:
        return {"items": await inbound.list_sources(conn, principal, project_id)}


@router.delete(
    "/inbound-sources/{source_id}",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Revoked: its URL answers 404"}, **errors(403, 404)},
)
async def delete_source(
    source_id: int,
    principal: Principal = Depends(current_principal),
    state: AppState = Depends(get_state),
) -> Response:
    async with state.engine.begin() as conn:
        await inbound.delete_source(conn, principal, source_id)
    return Response(status_code=204)


@public.post(
    "/inbound/k6cloud/{token}",
    response_model=None,
    responses={
        **ok(Received, 200, "Applied to the run (or a repeat: changed is false)"),
        **BODY,
        **errors(404, 409),
    },
)
async def receive_k6cloud(
    body: K6CloudWebhookIn,
    token: str = Path(description="the secret of the source's URL", max_length=100),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Grafana Cloud k6's webhook, as its Generic template renders it, becomes a run of
    the source's project and loadbell's own events for it. No Authorization header: the
    token in the path is the credential. A wrong or revoked token is a 404."""
    run = body.test_run
    hook = inbound.K6CloudHook(
        test_id=run.id,
        name=run.name,
        url=run.link,
        load_test_id=run.load_test_id,
        load_test_url=run.load_test_link,
        was_scheduled=run.was_scheduled == "yes",
        user_name=run.user_name,
        event_id=body.event.id,
        event_type=body.event.type,
        status=body.status,
        result=body.result,
    )
    handoff = state.handoff()
    async with transaction(state.engine) as conn:
        got = await inbound.receive_k6cloud(
            conn, state.box, token, hook, public_url=state.settings.base_url, handoff=handoff
        )
    state.staged(got.deliveries, handoff)
    if got.new_load_test:
        state.wakeup.poke()
    return {
        "run_id": got.run_id,
        "load_test_id": got.load_test_id,
        "event": got.event,
        "changed": got.changed,
    }
