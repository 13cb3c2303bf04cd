"""A webhook's signing secrets on its page: "Turn signing on", "Rotate secret" (the old
secret keeps signing for a window, so receivers can switch without losing a delivery) and
"Turn signing off". A new secret is shown once, on the page the redirect lands on; after
that the page shows each secret's status, never the secret."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.formats.signing import PREFIX as SIGNING_PREFIX
from loadbell.web.channel_calls import channel, raw_config, update
from loadbell.web.pages import Ctx, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ROTATION_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


def new_signing_secret() -> str:
    return SIGNING_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


async def signing_state(ctx: Ctx, channel_id: int) -> list[dict[str, str]]:
    """Each signing secret's status, never the secret itself."""
    raw = await raw_config(ctx, channel_id)
    out = []
    for i, entry in enumerate(raw.get("signing_secrets") or []):
        out.append({"n": str(i + 1), "expires_at": entry.get("expires_at", "")})
    return out


@router.post("/integrations/{channel_id}/signing")
async def signing(request: Request, channel_id: int) -> Response:
    """Turn signing on, rotate its secret (the old one keeps signing for a window), or off."""
    ctx = await Ctx.of(request)
    form_data = await ctx.form()
    shown = await channel(ctx, channel_id)
    ctx.require_manage(shown["organization_id"], "change integrations")
    action = form_data.get("action")
    raw = await raw_config(ctx, channel_id)
    now = datetime.now(UTC)
    new_secret: str | None = None
    if action == "off":
        secrets_list: list[dict[str, str]] = []
    else:
        window = ROTATION_WINDOWS.get(str(form_data.get("window")), ROTATION_WINDOWS["24h"])
        until = (now + window).isoformat().replace("+00:00", "Z")
        secrets_list = []
        for entry in raw.get("signing_secrets") or []:
            expires = entry.get("expires_at")
            if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
                continue  # already expired: nothing signs with it any more
            secrets_list.append({"secret": entry["secret"], "expires_at": expires or until})
        new_secret = new_signing_secret()
        secrets_list.append({"secret": new_secret})
    await update(ctx, channel_id, config={"signing_secrets": secrets_list})
    if new_secret is None:
        return ctx.redirect(f"/integrations/{channel_id}", "Signing turned off.")
    keep_secret(ctx, channel_id, new_secret)
    return ctx.redirect(
        f"/integrations/{channel_id}", "Copy the new signing secret now: it is not shown again."
    )


def keep_secret(ctx: Ctx, channel_id: int, secret: str) -> None:
    """Hand a new secret to the next page, to be shown there once (see :func:`shown_secret`)."""
    ctx.keep_once("signing", channel=str(channel_id), secret=secret)


def shown_secret(ctx: Ctx, channel_id: int) -> str | None:
    """The signing secret a POST just created for this channel, shown this once."""
    kept = ctx.shown_once("signing")
    if kept is None or kept.get("channel") != str(channel_id):
        return None
    return kept.get("secret")
