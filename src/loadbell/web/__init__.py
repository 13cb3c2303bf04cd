"""The web pages ``loadbell serve`` shows at ``/``: server-rendered Jinja2 with a little
JavaScript, no build step. One module per page; every change goes through the API's
handlers with the signed-in person as the caller (see ``pages.py``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the pages, the API docs page (``/docs``), their static files and HTML error pages
    (outside ``/api/``) to ``app``. Call it after ``api.errors.install``: the error pages wrap
    its handlers."""
    from loadbell.web import (
        api_docs,
        channel_preview,
        channel_signing,
        deliveries,
        errors,
        integrations,
        members,
        mutes,
        overrides,
        reference,
        runs,
        signin,
    )

    for module in (
        signin,
        integrations,
        channel_signing,
        channel_preview,
        overrides,
        deliveries,
        runs,
        mutes,
        members,
        api_docs,
        reference,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    errors.install(app)
