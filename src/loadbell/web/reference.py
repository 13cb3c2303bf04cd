"""Reference pages the forms link to: ``/help/templates``, the template reference.

The Setup form of a webhook links here for the context a Jinja2 body can use. The page is
docs/templates.md as the wheel carries it (``help/templates.md``, kept equal to the
repository's file by tests/web/test_reference.py), so the link works on every install, offline
too, and shows the reference of the version that runs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from loadbell.web.pages import Ctx, PageRoute

HELP = Path(__file__).parent / "help"

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/help/templates")
async def template_reference(request: Request) -> Response:
    ctx = await Ctx.of(request, signed_in=False)
    text = (HELP / "templates.md").read_text(encoding="utf-8")
    # No organization in the address: a signed-in reader's menu shows their first one, as
    # the sign-in lands there (without one, the menu's links would lead nowhere).
    roles = ctx.principal.roles if ctx.principal is not None else {}
    org_id = min(roles) if roles else None
    return await ctx.render(
        "help.html", title="Templates: custom webhook bodies", text=text, org_id=org_id
    )
