"""A project's settings of an organization channel (seed 003, XTC), and the Slack app
install buttons.

Each value shows where it comes from: inherited from the organization, or overridden in
this project. "Send messages" offers inherit, enabled and disabled; a blank value inherits
(a project never overrides with "empty"). "Set Up Slack Integration" leaves the page for
Slack without saving the form, "Remove Slack Integration" falls back to the organization's
install, and "Send Test Message" needs a complete configuration, own or inherited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.channels.registry import get_kind
from loadbell.channels.slack_app import INSTALL_KEYS
from loadbell.services import channels, overrides, slack, slack_checks
from loadbell.services.channel_config import COMMON
from loadbell.services.errors import Forbidden, NotFound, ServiceError
from loadbell.web.channel_form import (
    FINISHED,
    RESULTS,
    START_EVENTS,
    TRIGGERS,
    Field,
    event_choices,
    filter_values,
    form_for,
    override_values,
    parse_override_form,
    status_choices,
)
from loadbell.web.integrations import send_test_hook, slack_outcome, tested_result
from loadbell.web.noise_words import LABELS, described
from loadbell.web.pages import Ctx, PageRoute, field_errors, int_or_none

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _display(value: Any, field: Field | None = None) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return ""
    if field is not None and field.options:
        return dict(field.options).get(str(value), str(value))  # "LoadImpact / k6", not the key
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _template(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return ""
    lines = value.count("\n") + 1
    return f"a template of its own ({lines} line{'s' if lines != 1 else ''})"


def _any_or(chosen: list[str], every: tuple[str, ...], words: dict[str, str]) -> str:
    if set(chosen) >= set(every):
        return "any"
    return ", ".join(words.get(c, c) for c in chosen) or "none"


def inherited_filters(channel: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The organization channel's events and seed 000 filters in words, as the project
    inherits them (a project cannot override them)."""
    events = list(channel.get("events") or [])
    chosen = filter_values(events, channel.get("filters") or {})
    labels = {e["value"]: e["label"] for e in event_choices(channel["kind"])}
    out = [("Events", ", ".join(labels.get(e, e) for e in events) or "none")]
    if any(e in events for e in START_EVENTS):
        triggers = chosen["start_triggers"]
        starts = (
            "manual and scheduled" if set(triggers) >= set(TRIGGERS) else " and ".join(triggers)
        )
        out.append(("Test starts: notify on", f"{starts or 'no'} tests"))
    if FINISHED in events:
        names = {str(code): text for code, text in status_choices()}
        statuses = _any_or(chosen["finish_statuses"], tuple(names), names)
        results = _any_or(chosen["finish_results"], RESULTS, {})
        out.append(("Finished tests: statuses", statuses))
        out.append(("Finished tests: results", results))
    return out


async def _page(
    ctx: Ctx,
    channel_id: int,
    project_id: int,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
    tested: int | None = None,
    notice: str | None = None,
    problem: str | None = None,
) -> Response:
    async with ctx.state.reader.connect() as conn:
        channel = await channels.get_channel(conn, ctx.state.box, ctx.who, channel_id)
        if channel["project_id"] is not None:
            return ctx.redirect(f"/integrations/{channel_id}")
        eff = await overrides.get_effective(conn, ctx.state.box, ctx.who, channel_id, project_id)
    form = form_for(channel["kind"])
    own = (eff["override"] or {}).get("config") or {}
    rows = [
        {
            "field": f,
            "org": _display(channel["config"].get(f.key), f),
            "effective": _display(eff["config"].get(f.key), f),
            "source": eff["sources"].get(f.key, "default"),
            "own_secret": f.input == "secret" and bool(own.get(f.key)),
        }
        for f in form.fields
        if f.override
    ]
    missing = getattr(get_kind(channel["kind"]), "missing", None)
    fixed = [
        {
            "key": key,
            "label": label,
            "org": shown(channel["config"].get(key)),
            "own": shown(own.get(key)),
            "effective": shown(eff["config"].get(key)),
            "source": eff["sources"].get(key, "default"),
        }
        for key, label, shown, on in (
            ("headers", "Custom headers", _display, form.headers),
            ("template", "Template", _template, form.template),
        )
        if on
    ]
    fixed += [  # the keys every kind takes (noise control, auto-disable)
        {
            "key": key,
            "label": label,
            "org": described(key, channel["config"]),
            "own": described(key, own),
            "effective": described(key, eff["config"]),
            "source": eff["sources"].get(key, "default"),
        }
        for key, label in LABELS
    ]
    lacks: list[str] = missing(eff["config"]) if missing is not None else []
    install = None
    if form.slack_install:
        install = {
            "done": bool(eff["config"].get("bot_token")),
            "workspace": eff["config"].get("workspace"),
            "source": eff["sources"].get("bot_token"),
            "own": bool(own.get("bot_token")),
            "org": bool(channel["config"].get("bot_token")),
        }
    return await ctx.render(
        "project_settings.html",
        status=status,
        org_id=channel["organization_id"],
        project_id=project_id,
        section="integrations",
        channel=channel,
        form=form,
        eff=eff,
        rows=rows,
        fixed=fixed,
        filters=inherited_filters(channel),
        values=values or override_values(form, eff["override"]),
        errors=errors or {},
        can_manage=ctx.can_manage(channel["organization_id"]),
        lacks=lacks,
        install=install,
        events=event_choices(form.kind),
        statuses=status_choices(),
        tested=await tested_result(ctx, tested),
        notice=notice,
        problem=problem,
    )


@router.get("/integrations/{channel_id}/projects/{project_id}")
async def project_settings(
    request: Request,
    channel_id: int,
    project_id: int,
    tested: int | None = None,
    slack: str | None = None,
) -> Response:
    ctx = await Ctx.of(request)
    notice, problem = slack_outcome(slack)
    return await _page(ctx, channel_id, project_id, tested=tested, notice=notice, problem=problem)


@router.post("/integrations/{channel_id}/projects/{project_id}")
async def save_project_settings(request: Request, channel_id: int, project_id: int) -> Response:
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    here = f"/integrations/{channel_id}/projects/{project_id}"
    async with ctx.state.reader.connect() as conn:
        eff = await overrides.get_effective(conn, ctx.state.box, ctx.who, channel_id, project_id)
        channel = await channels.get_channel(conn, ctx.state.box, ctx.who, channel_id)
    ctx.require_manage(channel["organization_id"], "change a project's integration settings")
    action = form_data.get("action")
    if action == "reset":
        async with ctx.state.engine.begin() as conn:
            await overrides.delete_override(conn, ctx.who, channel_id, project_id)
        return ctx.redirect(here, "Every value is inherited from the organization again.")
    if action == "test":
        return await _send_test(ctx, channel_id, project_id, here)
    form = form_for(channel["kind"])
    own = (eff["override"] or {}).get("config") or {}
    enabled, config, values = parse_override_form(form, form_data, own)
    # The keys every kind takes (auto_disable, noise control) have no fields on this form:
    # the override keeps its own. Shown "off" (null, {}) is stored as false.
    config.update({k: own[k] or False for k in COMMON if k in own and k not in config})
    # The form replaces only the values it shows: a project's custom headers or template
    # (set through the API, shown read-only) are sent back as they are (masked: unchanged).
    shown = {f.key for f in form.fields if f.override}
    config.update({k: v for k, v in own.items() if k not in shown and k not in config})
    if form.slack_install:
        # The project's own install is not part of the form; send it back unchanged.
        config.update({k: own[k] for k in INSTALL_KEYS if own.get(k)})
    try:
        # As PUT /channels/{id}/overrides/{project_id}: Slack first, then the write.
        await slack_checks.before_override(
            ctx.state.reader, ctx.state.box, ctx.who, channel_id, project_id, config
        )
        async with ctx.state.engine.begin() as conn:
            await overrides.put_override(
                conn,
                ctx.state.box,
                ctx.who,
                channel_id,
                project_id,
                enabled=enabled,
                config=config,
            )
    except ServiceError as exc:
        if isinstance(exc, Forbidden | NotFound):
            raise
        return await _page(
            ctx, channel_id, project_id, values=values, errors=field_errors(exc), status=422
        )
    return ctx.redirect(here, "Project settings saved.")


async def _send_test(ctx: Ctx, channel_id: int, project_id: int | None, here: str) -> Response:
    tested, message = await send_test_hook(ctx, channel_id, project_id)
    if tested is not None:
        here = f"{here}{'&' if '?' in here else '?'}tested={tested}"
    return ctx.redirect(here, message)


def _back(channel_id: int, project_id: int | None) -> str:
    if project_id is None:
        return f"/integrations/{channel_id}"
    return f"/integrations/{channel_id}/projects/{project_id}"


@router.post("/integrations/{channel_id}/slack/install")
async def slack_install(request: Request, channel_id: int) -> Response:
    """Forward the browser to Slack's authorize page (the form is not saved: seed 003)."""
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    project_id = int_or_none(form_data.get("project_id"))
    try:
        async with ctx.state.engine.begin() as conn:
            link = await slack.start_install(
                conn, ctx.who, ctx.state.settings, channel_id, project_id
            )
    except ServiceError as exc:
        if isinstance(exc, Forbidden | NotFound):
            raise
        return ctx.redirect(_back(channel_id, project_id), exc.message, problem=True)
    return ctx.redirect(link.authorize_url)


@router.post("/integrations/{channel_id}/slack/remove")
async def slack_remove(request: Request, channel_id: int) -> Response:
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    project_id = int_or_none(form_data.get("project_id"))
    async with ctx.state.engine.begin() as conn:
        answer = await slack.remove_install(conn, ctx.state.box, ctx.who, channel_id, project_id)
    return ctx.redirect(_back(channel_id, project_id), str(answer["message"]))


@router.post("/integrations/{channel_id}/test")
async def send_test_message(request: Request, channel_id: int) -> Response:
    """ "Send Test Message" / "Test Hook" outside a form: the saved configuration."""
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    project_id = int_or_none(form_data.get("project_id"))
    return await _send_test(ctx, channel_id, project_id, _back(channel_id, project_id))
