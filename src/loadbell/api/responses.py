"""What the API answers, for the OpenAPI document: the error body, the statuses an operation
can return, and the response models of each resource.

Handlers return plain dicts; the models here describe them (``responses=`` on each route),
so a client generator gets real types, and ``tests/api/test_openapi.py`` runs schemathesis
to check that every answer conforms. They are not used to re-validate each answer: that
would cost every request a pass through pydantic for what the services already built.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loadbell.api.models import Metrics


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error loadbell answers (docs/api.md, "Errors")."""

    error: str = Field(description="what kind of error: not_found, invalid, conflict, ...")
    message: str = Field(description="what was wrong and what to do, for people")
    field: str | None = Field(description="the dotted path of the field at fault, or null")
    errors: list[FieldError] | None = Field(
        default=None, description="validation errors: one entry per problem"
    )
    request_id: str | None = Field(
        default=None, description="500 only: the id the server log has the details under"
    )


_WHEN = {
    400: "The body is not valid JSON, or the request cannot be understood as it is.",
    401: "The token is missing, malformed or unknown.",
    403: "The caller may see this but not change it (a member), or the token cannot.",
    404: "No such id, or one in another organization (never told apart).",
    409: "The state things are in forbids it (a run that ended, a name already used).",
    413: "The body is larger than LOADBELL_MAX_BODY_BYTES.",
    422: "A value is wrong; `field` names it.",
    500: "Something failed that should not have; `request_id` leads to the server log.",
    502: "Slack's Web API failed or refused.",
    503: "The database is unreachable or the server is overloaded (with Retry-After), or a "
    "setting this operation needs is missing.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for these error statuses, each with the error body."""
    return {status: {"model": ErrorOut, "description": _WHEN[status]} for status in statuses}


# Every operation that needs a token and may meet an unreachable database or a full server.
COMMON = errors(401, 422, 500, 503)
# Operations with a JSON body also answer malformed and oversized bodies.
BODY = errors(400, 413)


def ok(model: type[BaseModel], status: int = 200, what: str = "") -> dict[int | str, Any]:
    return {status: {"model": model, "description": what or "Success"}}


# -- resources -------------------------------------------------------------------------


class OrganizationOut(BaseModel):
    id: int
    name: str
    role: str = Field(description="the caller's role: owner, admin or member")
    created_at: datetime | None


class OrganizationList(BaseModel):
    items: list[OrganizationOut]


class ProjectOut(BaseModel):
    id: int
    organization_id: int
    name: str
    created_at: datetime | None
    updated_at: datetime | None


class ProjectList(BaseModel):
    items: list[ProjectOut]


class Tolerances(BaseModel):
    """How much worse than its baseline a run may be before it regressed; null: that
    check is off (docs/api.md, "Baselines and regressions")."""

    p95_pct: float | None = Field(description="p95_ms may rise this many per cent")
    avg_pct: float | None = Field(description="avg_ms may rise this many per cent")
    error_rate_pp: float | None = Field(description="error_rate may rise this many points")
    apdex_drop: float | None = Field(description="apdex may fall by this much")
    rps_pct: float | None = Field(description="rps may fall this many per cent")


class BaselineOut(BaseModel):
    run_id: int | None = Field(description="the run compared with; null: no passed run yet")
    pinned: bool = Field(description="true: pinned with PUT; false: the latest passed run")


class LoadTestOut(BaseModel):
    id: int
    project_id: int
    name: str
    created_at: datetime | None
    updated_at: datetime | None
    baseline: BaselineOut
    regression: Tolerances


class LoadTestList(BaseModel):
    items: list[LoadTestOut]


class RunOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"description": "A run (docs/api.md)."})
    id: int
    status: int = Field(description="seed 000's status code, -2 to 9 (docs/status-codes.md)")
    status_text: str
    result: str | None = Field(description="passed, failed, or null while the run goes on")
    trigger: str = Field(description="manual, scheduled or api")
    user_id: int | None
    user_name: str | None
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None = Field(description="ended_at - started_at, once ended")
    metrics: Metrics
    url: str = Field(description="the run's page")
    comparison: Comparison | None = Field(
        description="with the baseline run, once finished; null: no baseline, or not finished"
    )
    load_test_id: int
    load_test_name: str
    project_id: int
    organization_id: int
    updated_at: datetime | None


class FigureComparison(BaseModel):
    value: float = Field(description="this run's figure")
    baseline: float = Field(description="the baseline run's figure")
    change_pct: float | None = Field(
        description="(value - baseline) / baseline, per cent; null when the baseline is 0"
    )
    regressed: bool = Field(description="worse than the load test's tolerance allows")


class Comparison(BaseModel):
    """A finished run against its baseline. Only figures both runs reported are in
    ``figures``: p95_ms, avg_ms, error_rate, apdex, rps."""

    baseline_run_id: int
    figures: dict[str, FigureComparison]
    regressed: bool = Field(description="true when any figure regressed")


class StatusChange(BaseModel):
    status: int
    status_text: str
    at: datetime | None


class RunWithTimeline(RunOut):
    timeline: list[StatusChange]


class RunPage(BaseModel):
    items: list[RunOut]
    next_before_id: int | None = Field(description="the before_id of the next page, or null")


class ReportOut(BaseModel):
    id: int
    run_id: int
    at: str
    metrics: Metrics


class ReportPage(BaseModel):
    items: list[ReportOut]
    next_after_id: int | None


class ThresholdFailureOut(BaseModel):
    emitted: bool = Field(description="false: already reported for this run, nothing sent")
    metric: str
    expression: str


class ReportAvailableOut(BaseModel):
    emitted: bool
    report_url: str


# -- deliveries and events ---------------------------------------------------------------


class AttemptOut(BaseModel):
    series: int = Field(description="1, then one more per redelivery")
    number: int = Field(description="the attempt's number within its series, from 1")
    started_at: datetime
    duration_ms: float
    outcome: str = Field(description="delivered, retry or failed")
    request_url: str | None = Field(description="secret parts masked")
    request_headers: dict[str, Any] = Field(description="secret values masked")
    response_status: int | None
    response_body: str | None = Field(description="the first 4 KiB, the channel's secrets masked")
    error: str | None


class AttemptDetailOut(AttemptOut):
    """An attempt as ``GET /deliveries/{id}`` gives it: with the body sent and the
    response's headers (a page of the list leaves them out)."""

    request_body: str | None = Field(
        description="the body sent, its first 64 KiB, the channel's secrets masked; null: "
        "not recorded (no request was made, or an attempt before version 0011 of the schema)"
    )
    request_body_bytes: int | None = Field(
        description="the whole body's size in bytes (more than 65536: request_body is cut)"
    )
    response_headers: dict[str, str] | None = Field(
        description="the response's headers: at most 50, each value cut at 1,024 characters, "
        "credentials, cookies and the channel's secrets masked; null: no response"
    )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"description": "A delivery and its attempt log (docs/api.md)."}
    )
    id: int
    uuid: str = Field(description="the same on every attempt and redelivery (X-LoadImpact-ID)")
    status: str = Field(
        description="pending, held (waiting for quiet hours to end), succeeded, failed, "
        "skipped or suppressed (both ended without an attempt; `reason` says why)"
    )
    reason: str | None = Field(
        default=None,
        description="why it was not sent, or not at once: channel_disabled (skipped: its "
        "channel was disabled for failing); notify_on, throttle or quiet_hours (suppressed "
        "by noise control); quiet_hours on a held delivery, kept once it is released; null "
        "otherwise",
    )
    event_id: int
    event_type: str
    organization_id: int
    run_id: int | None
    channel_id: int
    channel_deleted: bool = Field(
        description="the channel was deleted: the delivery cannot be sent again (409)"
    )
    target: str | None
    series: int
    attempt_count: int = Field(description="attempts in the current series")
    next_attempt_at: datetime | None = Field(
        description="while pending; while held, the end of the quiet hours"
    )
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    attempts: list[AttemptOut] = Field(description="every series, oldest attempt first")


class DeliveryDetailOut(DeliveryOut):
    model_config = ConfigDict(
        json_schema_extra={
            "description": "A delivery and its attempt log, each attempt with the body sent "
            "and the response headers (docs/api.md)."
        }
    )
    attempts: list[AttemptDetailOut] = Field(  # type: ignore[assignment]
        description="every series, oldest attempt first"
    )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_before_id: int | None = Field(
        description="the before_id of the next page, or null (with run_id: always null)"
    )
    next_after_id: int | None = Field(
        description="with run_id: the after_id of the next page, or null (else always null)"
    )


class ForwardedRequestOut(BaseModel):
    """A delivery's request rendered again (GET /deliveries/{id}/request)."""

    delivery_id: int
    uuid: str = Field(description="the delivery id receivers see (X-LoadImpact-ID, webhook-id)")
    event_type: str
    channel_id: int
    kind: str
    status: str = Field(description="the delivery's status in the log")
    created_at: datetime
    method: str
    url: str = Field(description="where the channel sends it, masked as in the attempt log")
    headers: dict[str, str] = Field(
        description="every header the channel sends, a webhook's signature made afresh; other "
        "kinds' credentials masked"
    )
    body: str = Field(description="the body, as UTF-8 text")


class RedeliveredOut(BaseModel):
    redelivered: int = Field(description="how many deliveries start a new series")
    ids: list[int]


class EventOut(BaseModel):
    id: int
    type: str = Field(description="test.started, test.finished, ... (docs/api.md, Events)")
    occurred_at: datetime
    organization_id: int
    project_id: int | None
    load_test_id: int | None
    run_id: int | None
    context: dict[str, Any] = Field(
        description="the organization, project, load test and run as they were then"
    )


class EventList(BaseModel):
    items: list[EventOut]


class MuteOut(BaseModel):
    """A mute: the events it matches are recorded ``suppressed`` (reason ``muted``) until
    ``until`` (docs/api.md, "Mutes")."""

    id: int
    organization_id: int
    project_id: int | None = Field(description="null: every project of the organization")
    load_test_id: int | None = Field(description="null: every load test in its scope")
    channel_id: int | None = Field(description="null: every channel")
    until: datetime = Field(description="when it ends, UTC")
    reason: str
    active: bool = Field(description="true while until is in the future")
    created_at: datetime
    created_by: int = Field(description="the id of the user who made it")
    created_by_name: str


class MuteList(BaseModel):
    items: list[MuteOut]
    next_before_id: int | None = Field(description="the before_id of the next page, or null")


class HealthOut(BaseModel):
    """/healthz: 200 when everything answers, 503 (same body) when something does not."""

    status: str = Field(description="ok, or error when the answer is 503")
    database: str = Field(description="ok or unreachable")
    worker: str = Field(
        description="running, waiting for the database, stopped, starting (serve's worker "
        "process has not said it is ready yet), restarting (it exited and is being started "
        "again), or not in this process"
    )
    worker_pid: int | None = Field(
        default=None, description="serve's worker process, while it runs (serve --worker process)"
    )


# -- channels --------------------------------------------------------------------------


class RetryOut(BaseModel):
    """The channel's retry policy, its own values over the defaults (docs/api.md)."""

    max_attempts: int
    base_delay: float = Field(description="seconds")
    factor: float
    max_delay: float = Field(description="seconds")
    timeout: float = Field(description="seconds per attempt")


class TargetHealthOut(BaseModel):
    target: str = Field(description="a Slack channel of the channel's targets")
    state: str = Field(description="healthy, failing or disabled")
    consecutive_failures: int
    last_success_at: datetime | None
    last_failure_at: datetime | None


class ChannelHealthOut(BaseModel):
    """Whether the channel's deliveries get through (docs/api.md, Channel health)."""

    state: str = Field(
        description="healthy, failing (its last delivery failed for good), or disabled "
        "(disabled for failing: config.auto_disable)"
    )
    consecutive_failures: int = Field(
        description="deliveries failed for good since the last success"
    )
    last_success_at: datetime | None
    last_failure_at: datetime | None
    success_rate_24h: float | None = Field(
        description="succeeded / (succeeded + failed) of the deliveries that ended in the "
        "last 24 hours, 0 to 1; null when none ended"
    )
    disabled_at: datetime | None
    disabled_reason: str | None
    targets: list[TargetHealthOut] = Field(
        default_factory=list, description="per target, for a channel with several (Slack)"
    )


class ChannelOut(BaseModel):
    """A channel: its own settings with the kind's defaults, secrets masked."""

    id: int
    organization_id: int
    project_id: int | None = Field(description="set for a project's own channel")
    kind: str
    name: str
    enabled: bool
    config: dict[str, Any] = Field(description="the kind's settings (docs/channels.md)")
    events: list[str]
    filters: dict[str, Any]
    retry: RetryOut
    health: ChannelHealthOut
    created_at: datetime | None
    updated_at: datetime | None


class ChannelList(BaseModel):
    items: list[ChannelOut]


class OverrideOut(BaseModel):
    enabled: bool | None = Field(description="null: inherits the organization's")
    config: dict[str, Any] = Field(description="the project's own values, secrets masked")


class EffectiveOut(BaseModel):
    """The channel as one project sees it, with where each value comes from."""

    channel_id: int
    project_id: int | None
    kind: str
    enabled: bool
    config: dict[str, Any]
    sources: dict[str, str] = Field(description="key -> organization, project or default")
    override: OverrideOut | None
    events: list[str]
    filters: dict[str, Any]


class AttemptResult(BaseModel):
    """The first attempt of one test delivery (``pending``: none was made in time)."""

    delivery_id: int
    outcome: str = Field(description="delivered, retry, failed or pending")
    response_status: int | None = None
    response_body: str | None = None
    duration_ms: float | None = None
    error: str | None = None


class TestHookOut(BaseModel):
    """The test hook's event, and the first attempt of its deliveries; the first one's
    fields are repeated at the top level."""

    event_id: int
    ok: bool = Field(description="true when every delivery's first attempt was delivered")
    delivery_id: int | None = None
    outcome: str | None = None
    response_status: int | None = None
    response_body: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    results: list[AttemptResult]


class PreviewOut(BaseModel):
    """What the channel would send, secrets masked as in the attempt log."""

    event: str
    method: str
    url: str
    headers: dict[str, str]
    body: str


class ChannelPreviewOut(PreviewOut):
    channel_id: int


class SlackInstallLink(BaseModel):
    authorize_url: str = Field(description="Slack's authorize page, also in Location")
    expires_in: float = Field(description="seconds the link stays usable")


class SlackInstalled(BaseModel):
    ok: bool
    channel_id: int
    project_id: int | None
    workspace: str
    team_id: str
    message: str
    warnings: list[str]


class SlackRemoved(BaseModel):
    channel_id: int
    project_id: int | None
    removed: bool
    workspace: str | None = Field(description="the workspace the level now uses, if any")
    message: str


def redirect(status: int, what: str) -> dict[int | str, Any]:
    """A redirect answer (no body worth a model)."""
    return {status: {"description": what}}
