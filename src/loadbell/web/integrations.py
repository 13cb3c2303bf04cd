"""Integrations: every channel kind with its state, and each kind's "Setup" form.

Seed 000: "Integrations" in the left menu, "Setup" per kind, a URL field with "Save
Changes" and "Test Hook". Every change goes through the channel services, the API's own
operations, with the signed-in person as the caller, so the pages obey exactly the rules
of the API (roles, validation, masking, inheritance) and never re-implement them. Like an
API handler, a page owns the transaction. A webhook's signing secrets have their own
module (``channel_signing.py``), and so has the form's preview (``channel_preview.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.channels.registry import KINDS, get_kind
from loadbell.domain.events import EventType
from loadbell.domain.inheritance import Source
from loadbell.services import access as lookups
from loadbell.services import channels, deliveries, test_hook
from loadbell.services.errors import Forbidden, NotFound, ServiceError
from loadbell.web import channel_calls
from loadbell.web.channel_checks import private_target, test_needs
from loadbell.web.channel_form import (
    TEMPLATE_HELP,
    KindForm,
    Posted,
    error_links,
    event_choices,
    form_for,
    keep_k6cloud_selection,
    new_values,
    parse_channel_form,
    status_choices,
    stored_values,
)
from loadbell.web.channel_preview import form_event, form_preview
from loadbell.web.channel_signing import (
    ROTATION_WINDOWS,
    keep_secret,
    new_signing_secret,
    shown_secret,
    signing_state,
)
from loadbell.web.channel_summary import Listed, health_of, seen_summary, summary_of
from loadbell.web.pages import Ctx, PageError, PageRoute, field_errors

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def project_org(ctx: Ctx, project_id: int) -> tuple[int, str]:
    async with ctx.state.reader.connect() as conn:
        row = await lookups.project(conn, ctx.who, project_id)
    return int(row.organization_id), str(row.name)


@router.get("/orgs/{org_id}/integrations")
async def org_integrations(request: Request, org_id: int, slack: str | None = None) -> Response:
    ctx = await Ctx.of(request)
    ctx.who.role_in(org_id)
    notice, problem = slack_outcome(slack, here=False)
    async with ctx.state.reader.connect() as conn:
        listed = await channels.list_channels(conn, ctx.state.box, ctx.who, organization_id=org_id)
    by_kind: dict[str, list[Listed]] = {k.value: [] for k in KINDS}
    for ch in listed:
        if ch["project_id"] is not None:
            continue
        state = "set up" if ch["enabled"] else "disabled"
        by_kind.setdefault(ch["kind"], []).append(
            Listed(
                ch["id"],
                ch["name"],
                state,
                "Set up" if ch["enabled"] else "Disabled",
                summary_of(ch["config"]),
                f"/integrations/{ch['id']}",
                "organization",
                health=health_of(ch),
            )
        )
    return await ctx.render(
        "integrations.html",
        org_id=org_id,
        section="integrations",
        kinds=[(form_for(k), by_kind.get(k, [])) for k in by_kind],
        disabled=[c for listed in by_kind.values() for c in listed if c.health.state == "disabled"],
        project=None,
        can_manage=ctx.can_manage(org_id),
        notice=notice,
        problem=problem,
    )


@router.get("/projects/{project_id}/integrations")
async def project_integrations(request: Request, project_id: int) -> Response:
    ctx = await Ctx.of(request)
    org_id, project_name = await project_org(ctx, project_id)
    async with ctx.state.reader.connect() as conn:
        items = await channels.for_project(conn, ctx.state.box, ctx.who, project_id)
    by_kind: dict[str, list[Listed]] = {k.value: [] for k in KINDS}
    for ch, seen in items:
        if ch["project_id"] is not None:
            state = "set up" if ch["enabled"] else "disabled"
            text = "Set up in this project" if ch["enabled"] else "Disabled"
            entry = Listed(
                ch["id"],
                ch["name"],
                state,
                text,
                summary_of(ch["config"]),
                f"/integrations/{ch['id']}",
                "project",
                health=health_of(ch),
            )
        else:
            if not seen.enabled:
                state = "disabled"
                text = (
                    "Disabled in this project"
                    if seen.sources["enabled"] is Source.PROJECT
                    else "Disabled in the organization"
                )
            elif Source.PROJECT in seen.sources.values():
                state, text = "overridden", "Inherited, with project overrides"
            else:
                state, text = "inherited", "Inherited from the organization"
            entry = Listed(
                ch["id"],
                ch["name"],
                state,
                text,
                seen_summary(ch["kind"], seen),
                f"/integrations/{ch['id']}/projects/{project_id}",
                "organization",
                health=health_of(ch),
            )
        by_kind.setdefault(ch["kind"], []).append(entry)
    return await ctx.render(
        "integrations.html",
        org_id=org_id,
        project_id=project_id,
        section="integrations",
        kinds=[(form_for(k), by_kind.get(k, [])) for k in by_kind],
        disabled=[c for listed in by_kind.values() for c in listed if c.health.state == "disabled"],
        project={"id": project_id, "name": project_name},
        can_manage=ctx.can_manage(org_id),
    )


# -- the Setup form --------------------------------------------------------------------


async def _render_form(
    ctx: Ctx,
    kind: KindForm,
    *,
    org_id: int,
    project_id: int | None,
    channel: dict[str, Any] | None,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
    tested: dict[str, Any] | None = None,
    preview: dict[str, Any] | None = None,
    new_secret: str | None = None,
    signing: list[dict[str, str]] | None = None,
    notice: str | None = None,
    problem: str | None = None,
) -> Response:
    kind_impl = get_kind(kind.kind)
    preview_events = [
        e.value for e in EventType if e in kind_impl.events(channel["config"] if channel else {})
    ]
    needs, targets_only = test_needs(channel["config"] if channel else None)
    warning = None
    if channel is not None:  # read from the saved URL itself: its host is all it shows
        raw = await channel_calls.raw_config(ctx, channel["id"])
        warning = private_target(kind.kind, raw, allowed=ctx.state.settings.allow_private_targets)
    return await ctx.render(
        "channel.html",
        status=status,
        org_id=org_id,
        project_id=project_id,
        section="integrations",
        form=kind,
        channel=channel,
        values=values,
        errors=errors or {},
        summary=error_links(kind, errors or {}, values),
        can_manage=ctx.can_manage(org_id),
        test_needs=needs if kind.slack_install else [],
        test_needs_targets_only=targets_only,
        private_target=warning,
        template_help=TEMPLATE_HELP,
        events=event_choices(kind.kind),
        statuses=status_choices(),
        tested=tested,
        preview=preview,
        preview_events=preview_events,
        new_secret=new_secret,
        signing=signing or [],
        windows=list(ROTATION_WINDOWS),
        notice=notice,
        problem=problem,
    )


def _kind_or_404(kind: str) -> KindForm:
    try:
        get_kind(kind)
    except KeyError as exc:
        raise PageError(404, str(exc.args[0])) from None
    return form_for(kind)


@router.get("/orgs/{org_id}/integrations/new")
async def new_channel_form(
    request: Request, org_id: int, kind: str, project_id: int | None = None
) -> Response:
    ctx = await Ctx.of(request)
    ctx.require_manage(org_id, "set up integrations")
    if project_id is not None and (await project_org(ctx, project_id))[0] != org_id:
        raise PageError(404, f"project {project_id} not found in this organization")
    form = _kind_or_404(kind)
    return await _render_form(
        ctx, form, org_id=org_id, project_id=project_id, channel=None, values=new_values(form)
    )


@router.post("/orgs/{org_id}/integrations/new")
async def create_channel(
    request: Request, org_id: int, kind: str, project_id: int | None = None
) -> Response:
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    ctx.require_manage(org_id, "set up integrations")
    form = _kind_or_404(kind)
    posted = parse_channel_form(form, form_data, None)
    posted.values["preview_event"] = form_event(form_data)
    new_secret = new_signing_secret() if form.signing and form_data.get("sign") else None
    if new_secret:
        posted.config["signing_secrets"] = [new_secret]
    posted.values["sign"] = bool(new_secret)
    action = form_data.get("action")
    if not posted.errors and action != "preview":
        try:
            async with ctx.state.engine.begin() as conn:
                created = await channels.create_channel(
                    conn,
                    ctx.state.box,
                    ctx.who,
                    organization_id=org_id,
                    project_id=project_id,
                    kind=form.kind,
                    name=posted.name,
                    enabled=posted.enabled,
                    config=channel_calls.drop_none(posted.config),
                    events=posted.events,
                    filters=posted.filters,
                )
        except ServiceError as exc:
            if isinstance(exc, Forbidden | NotFound):
                raise
            posted.errors.update(field_errors(exc))
        else:
            return await _after_save(ctx, created, action, new_secret=new_secret)
    preview = await form_preview(ctx, form, posted, None) if action == "preview" else None
    return await _render_form(
        ctx,
        form,
        org_id=org_id,
        project_id=project_id,
        channel=None,
        values=posted.values,
        errors=posted.errors,
        status=200 if action == "preview" and not posted.errors else 422,
        preview=preview,
    )


async def _after_save(
    ctx: Ctx, channel: dict[str, Any], action: Any, *, new_secret: str | None = None
) -> Response:
    """After "Save Changes" or "Test Hook": send the test if asked, then show the channel.

    A new signing secret goes with the redirect, to be shown once on the page it lands on."""
    where = f"/integrations/{channel['id']}"
    tested: int | None = None
    message = "Changes saved."
    if action == "test":
        # The test's own result shows how it went (delivered, or failed and why): the
        # banner confirms the save, and speaks of the test only when none was sent.
        tested, refused = await send_test_hook(ctx, channel["id"], None)
        if refused:
            message = f"{message} {refused}"
    if new_secret:
        keep_secret(ctx, channel["id"], new_secret)
        message = f"{message} Copy the signing secret now: it is not shown again."
    if tested is not None:
        where = f"{where}?tested={tested}"
    return ctx.redirect(where, message)


async def send_test_hook(
    ctx: Ctx, channel_id: int, project_id: int | None
) -> tuple[int | None, str]:
    """Send the test hook (seed 000: {"event": "test.notification_channel"}) and wait for
    its first attempt: the delivery to show, or None and why nothing was sent."""
    handoff = ctx.state.handoff()
    try:
        async with ctx.state.engine.begin() as conn:
            staged = await test_hook.stage_test(
                conn, ctx.state.box, ctx.who, channel_id, project_id, handoff
            )
    except ServiceError as exc:
        if isinstance(exc, Forbidden | NotFound):
            raise
        return None, f"No test message was sent: {exc.message}"
    ctx.state.staged(staged.delivery_ids, handoff)
    await test_hook.first_attempts(ctx.state.reader, staged)
    if not staged.delivery_ids:
        return None, "No test message was sent."
    return staged.delivery_ids[0], ""


async def tested_result(ctx: Ctx, delivery_id: int | None) -> dict[str, Any] | None:
    """The first attempt of a test delivery, as the page shows it after "Test Hook"."""
    if delivery_id is None:
        return None
    try:
        async with ctx.state.reader.connect() as conn:
            delivery = await deliveries.get_delivery(conn, ctx.who, delivery_id)
    except ServiceError:
        return None
    attempts = [a for a in delivery["attempts"] if a["series"] == delivery["series"]]
    return {"delivery": delivery, "attempt": attempts[0] if attempts else None}


async def _show_channel(
    ctx: Ctx,
    channel_id: int,
    *,
    tested: int | None = None,
    new_secret: str | None = None,
    notice: str | None = None,
    problem: str | None = None,
    preview_event: str | None = None,
) -> Response:
    """The channel's page as saved; with ``preview_event``, also what it sends for it."""
    channel = await channel_calls.channel(ctx, channel_id)
    form = form_for(channel["kind"])
    values = stored_values(form, channel)
    preview = None
    if preview_event is not None:
        values["preview_event"] = preview_event
        preview = await form_preview(ctx, form, Posted(values=values), channel_id)
    return await _render_form(
        ctx,
        form,
        org_id=channel["organization_id"],
        project_id=channel["project_id"],
        channel=channel,
        values=values,
        tested=await tested_result(ctx, tested),
        preview=preview,
        new_secret=new_secret,
        signing=await signing_state(ctx, channel_id) if form.signing else None,
        notice=notice,
        problem=problem,
    )


SLACK_DONE = "Slack integration done: messages now go to the workspace shown below."
_SLACK_AGAIN = "Nothing changed. To try again, use “Set Up Slack Integration”"
# Why an install failed, by the error code the callback sends the browser back with
# (``?slack=<code>``). Only these fixed sentences are shown: the address carries no text.
SLACK_PROBLEMS = {
    "slack_declined": "Slack did not install the app: it was cancelled on Slack's page, or "
    "the workspace needs an admin's approval first.",
    "invalid_state": "This Slack install link can no longer be used: it expired after 10 "
    "minutes, was already used, or was not issued by this loadbell.",
    "invalid_callback": "Slack came back without an authorization code.",
    "slack_refused": "Slack refused the install (check the app's client ID, secret and "
    "Redirect URLs).",
    "slack_unreachable": "loadbell could not reach Slack to finish the install.",
    "slack_not_configured": "This server has no Slack app configured "
    "(LOADBELL_SLACK_CLIENT_ID and LOADBELL_SLACK_CLIENT_SECRET).",
}


def slack_outcome(slack: str | None, *, here: bool = True) -> tuple[str | None, str | None]:
    """The notice, or the problem, to show after Slack's callback sent the browser back."""
    if not slack:
        return None, None
    if slack == "done":
        return SLACK_DONE, None
    why = SLACK_PROBLEMS.get(slack, "The Slack integration was not set up.")
    where = " below." if here else " on the Slack app integration's page."
    return None, f"{why} {_SLACK_AGAIN}{where}"


@router.get("/integrations/{channel_id}")
async def channel_page(
    request: Request, channel_id: int, tested: int | None = None, slack: str | None = None
) -> Response:
    ctx = await Ctx.of(request)
    notice, problem = slack_outcome(slack)
    return await _show_channel(
        ctx,
        channel_id,
        tested=tested,
        new_secret=shown_secret(ctx, channel_id),
        notice=notice,
        problem=problem,
    )


@router.post("/integrations/{channel_id}")
async def save_channel(request: Request, channel_id: int) -> Response:
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    channel = await channel_calls.channel(ctx, channel_id)
    action = form_data.get("action")
    if action == "preview" and not ctx.can_manage(channel["organization_id"]):
        # Members see everything read-only, what the channel sends too: its saved settings.
        return await _show_channel(ctx, channel_id, preview_event=form_event(form_data))
    ctx.require_manage(channel["organization_id"], "change integrations")
    form = form_for(channel["kind"])
    posted = parse_channel_form(form, form_data, channel["config"])
    keep_k6cloud_selection(posted, channel.get("filters") or {})
    posted.values["preview_event"] = form_event(form_data)
    if not posted.errors and action != "preview":
        try:
            saved = await channel_calls.update(
                ctx,
                channel_id,
                name=posted.name,
                enabled=posted.enabled,
                config=posted.config,
                events=posted.events,
                filters=posted.filters,
            )
        except ServiceError as exc:
            if isinstance(exc, Forbidden | NotFound):
                raise
            posted.errors.update(field_errors(exc))
        else:
            return await _after_save(ctx, saved, action)
    preview = await form_preview(ctx, form, posted, channel_id) if action == "preview" else None
    return await _render_form(
        ctx,
        form,
        org_id=channel["organization_id"],
        project_id=channel["project_id"],
        channel=channel,
        values=posted.values,
        errors=posted.errors,
        status=200 if action == "preview" and not posted.errors else 422,
        preview=preview,
        signing=await signing_state(ctx, channel_id) if form.signing else None,
    )


@router.post("/integrations/{channel_id}/delete")
async def delete_channel(request: Request, channel_id: int) -> Response:
    ctx = await Ctx.of(request)
    await ctx.form()
    channel = await channel_calls.channel(ctx, channel_id)
    async with ctx.state.engine.begin() as conn:
        await channels.delete_channel(conn, ctx.who, channel_id)
    where = (
        f"/projects/{channel['project_id']}/integrations"
        if channel["project_id"]
        else f"/orgs/{channel['organization_id']}/integrations"
    )
    return ctx.redirect(where, f"Integration '{channel['name']}' removed.")
