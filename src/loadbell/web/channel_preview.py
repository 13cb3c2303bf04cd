"""A channel form's preview: what the channel would send for the chosen event, with sample
data, as the form stands. JavaScript posts the whole form to ``/integrations-preview`` as
it is typed; without JavaScript the form's "Preview" button shows the same on the page.
Nothing is sent, and saved secrets fill in what the form masks without being shown."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import JSONResponse, Response

from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.services import channel_config as cc
from loadbell.services import previews
from loadbell.services.errors import ServiceError
from loadbell.web import slack_preview
from loadbell.web.channel_calls import channel, drop_none, raw_config
from loadbell.web.channel_form import FORMS, KindForm, Posted, form_for, parse_channel_form
from loadbell.web.pages import Ctx, PageRoute, int_or_none

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SLACK_KINDS = ("slack", "slack_app")  # their previews are drawn as the message


async def form_preview(
    ctx: Ctx, form: KindForm, posted: Posted, channel_id: int | None
) -> dict[str, Any]:
    """What the channel would send for the chosen event, rendered by the preview service
    from the form as it stands (saved secrets filled in, never shown)."""
    kind = get_kind(form.kind)
    stored = await raw_config(ctx, channel_id) if channel_id is not None else {}
    config = {**stored, **cc.keep_masked(kind, stored, posted.config)}
    config = drop_none(config)
    for f in form.fields:
        if f.required and f.input == "secret" and not config.get(f.key):
            config[f.key] = "https://example.invalid/preview"  # a preview needs no real URL
    if form.slack_install:  # nor an install, nor a target: the message looks the same
        config.setdefault("bot_token", "xoxb-preview")
        config["targets"] = config.get("targets") or "#load-tests"
    event = str(posted.values.get("preview_event") or "test.finished")
    try:
        clean = {**kind.defaults, **cc.validated_config(kind, config)}
        event_type = EventType(event)
        if event_type not in kind.events(clean):
            event_type = next(e for e in EventType if e in kind.events(clean))
        message = samples.sample_message(event_type, public_url=ctx.state.settings.base_url)
        shown = previews.render_preview(kind, clean, message)
    except ServiceError as exc:
        return {"ok": False, "error": exc.message}
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    # Slack's message as people will see it; its Block Kit JSON stays under it.
    rendered = slack_preview.of_body(shown["body"]) if form.kind in SLACK_KINDS else None
    return {"ok": True, **shown, "rendered": rendered}


@router.post("/integrations-preview")
async def live_preview(request: Request) -> Response:
    """The form's live preview (JavaScript posts the whole form here). Sends nothing."""
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    kind_name = str(form_data.get("kind") or "")
    if kind_name not in FORMS:
        return JSONResponse({"ok": False, "error": f"unknown kind '{kind_name}'"}, 422)
    form = form_for(kind_name)
    channel_id = int_or_none(form_data.get("channel_id"))
    saved = await channel(ctx, channel_id) if channel_id is not None else None
    if saved is not None and not ctx.can_manage(saved["organization_id"]):
        # A member's form is read-only (disabled fields are not posted): the saved settings.
        posted = Posted()
    else:
        posted = parse_channel_form(form, form_data, saved["config"] if saved else None)
    posted.values["preview_event"] = form_data.get("preview_event")
    result = await form_preview(ctx, form, posted, channel_id)
    return JSONResponse(orjson.loads(orjson.dumps(result)))


def form_event(form_data: FormData) -> str:
    """The event the form's preview shows ("test.finished" until one is chosen)."""
    value = form_data.get("preview_event")
    return value if isinstance(value, str) else "test.finished"
