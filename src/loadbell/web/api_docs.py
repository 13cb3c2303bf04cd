"""The API docs page, ``/docs``: Swagger UI from files loadbell ships, so it works offline.

FastAPI's own ``/docs`` loads Swagger UI's script, stylesheet and favicon from a CDN and is
blank on a machine without internet. This page is the same ``get_swagger_ui_html``, pointed
at the copy of swagger-ui-dist under ``static/swagger-ui/`` (its README says which release and
how to update it). Its static files are under ``/static/``, which admission lets through
(api/admission.py, ``EXEMPT``): they are read from disk and touch no database.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI_VERSION = "5.35.0"  # static/swagger-ui/README.md
ASSETS = "/static/swagger-ui"
# Swagger UI needs its inline start-up script and inline styles. Everything else, fetches of
# the OpenAPI document and "Try it out" included, stays on this origin: a future Swagger UI
# that reached for another host would be refused by the browser, not just by the firewall.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; "
        "base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter()


@router.get("/docs", include_in_schema=False)
async def api_docs(request: Request) -> HTMLResponse:
    # Behind a proxy that mounts loadbell under a path, every URL keeps that path.
    root = request.scope.get("root_path", "").rstrip("/")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} – API docs",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css?v={SWAGGER_UI_VERSION}",
        swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=None,  # sign-in is a bearer token, no OAuth2 flow
        # Swagger UI's online validator (validator.swagger.io) stays off in any layout; the
        # page's policy would refuse it anyway.
        swagger_ui_parameters={"validatorUrl": None},
    )
    # FastAPI's page has no language; screen readers need it to pick a voice.
    body = bytes(page.body).replace(b"<html>", b'<html lang="en">', 1)
    return HTMLResponse(body, headers=SECURITY_HEADERS)
