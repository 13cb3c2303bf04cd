"""What every page handler uses: the request context, rendering, redirects and errors.

A page handler starts with ``ctx = await Ctx.of(request)`` (which sends people who are not
signed in to the sign-in page), reads forms with ``await ctx.form()`` (which checks the
CSRF token) and ends with ``await ctx.render(...)`` or ``ctx.redirect(...)``. Errors the
services raise (``ServiceError``: 403, 404, 409, 422) become an HTML page with the same
status and the same sentence, through :class:`PageRoute`; errors no handler sees (unknown
addresses, wrong methods, bad path parameters, failures) get the same page from
``web/errors.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import Request
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from loadbell import __version__
from loadbell.api.errors import http_status
from loadbell.api.state import AppState, state_of
from loadbell.domain.metrics import run_duration
from loadbell.domain.roles import Role
from loadbell.services.access import Principal
from loadbell.services.errors import ServiceError
from loadbell.store.tables import organizations, projects
from loadbell.web.session import (
    COOKIE,
    CSRF_FIELD,
    FLASH_COOKIE,
    INFO,
    ONCE_COOKIE,
    PROBLEM,
    Session,
    Sessions,
    principal_of,
)

TEMPLATES = Path(__file__).parent / "templates"
log = logging.getLogger(__name__)

# Pages are HTML with our own CSS and JS only: no inline script, no third-party origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class PageError(Exception):
    """An error page: ``status`` and a sentence that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInRequired(Exception):
    pass


def _when(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _ms(value: Any) -> str:
    if value is None:
        return "–"
    return f"{float(value):.0f} ms" if float(value) >= 10 else f"{float(value):.1f} ms"


class Web:
    """Built once per app, on the first page request (the secret key exists by then)."""

    def __init__(self, state: AppState) -> None:
        self.sessions = Sessions(state.settings)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html", "svg"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=_when, duration=_duration, ms=_ms, run_duration=run_duration)
        self.env.globals.update(version=__version__, csrf_field=CSRF_FIELD)

    @staticmethod
    def of(request: Request) -> Web:
        web: Web | None = getattr(request.app.state, "loadbell_web", None)
        if web is None:
            web = Web(state_of(request))
            request.app.state.loadbell_web = web
        return web


@dataclass(frozen=True)
class Nav:
    """The organization and project switcher, and the left menu."""

    orgs: list[tuple[int, str]]
    projects: list[tuple[int, str]]
    org_id: int | None
    project_id: int | None
    section: str
    role: Role | None

    @property
    def org_name(self) -> str:
        return next((n for i, n in self.orgs if i == self.org_id), "")

    @property
    def project_name(self) -> str:
        return next((n for i, n in self.projects if i == self.project_id), "")


@dataclass
class Ctx:
    request: Request
    state: AppState
    web: Web
    session: Session
    principal: Principal | None
    _send_session: bool = False
    _flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    _once: tuple[str, dict[str, str]] | None = None

    @classmethod
    async def of(cls, request: Request, *, signed_in: bool = True) -> Ctx:
        state = state_of(request)
        web = Web.of(request)
        session = web.sessions.load(request.cookies.get(COOKIE))
        fresh = session is None
        session = session or Session.anonymous()
        principal = await principal_of(state, session)
        if principal is None and session.user_id is not None:
            session, fresh = Session.anonymous(), True  # the session no longer stands
        ctx = cls(request, state, web, session, principal, fresh)
        if signed_in and principal is None:
            raise SignInRequired
        return ctx

    @property
    def who(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def can_manage(self, organization_id: int) -> bool:
        role = self.who.roles.get(organization_id)
        return role is not None and role.can_manage

    def require_manage(self, organization_id: int, what: str) -> None:
        self.who.require_manage(organization_id, what)

    def sign_in(self, session: Session) -> None:
        self.session, self._send_session = session, True

    def sign_out(self) -> None:
        self.session, self._send_session = Session.anonymous(), True

    async def form(self) -> FormData:
        """The posted form, after the CSRF check (403 when it fails)."""
        data = await self.request.form()
        submitted = data.get(CSRF_FIELD)
        if not self.session.csrf_ok(submitted if isinstance(submitted, str) else None):
            raise PageError(
                403,
                "This form has expired or did not come from loadbell (its CSRF token does not "
                "match your session). Go back, reload the page and send it again.",
            )
        return data

    def flash(self, message: str, *, problem: bool = False) -> None:
        """A message for the next page shown: this one when it renders, else the target of
        the redirect (through a short-lived cookie). ``problem``: a refusal or a failure,
        shown in the error style ("the last owner cannot be demoted"), not as news."""
        self._flash.append((PROBLEM if problem else INFO, message))

    def keep_once(self, kind: str, **values: str) -> None:
        """A secret for the page the redirect lands on, and for no page after it."""
        self._once = (kind, values)

    def shown_once(self, kind: str) -> dict[str, str] | None:
        """The secret a POST left for this page (``keep_once``), if it is of ``kind``.
        ``render`` clears it, so reloading the page does not show it again."""
        data = self.web.sessions.read_once(self.request.cookies.get(ONCE_COOKIE))
        if data is None or data.pop("kind", None) != kind:
            return None
        return data

    def _finish(self, response: Response) -> Response:
        if self._send_session:
            self.web.sessions.store(response, self.session)
        if self._once is not None:
            self.web.sessions.once(response, self._once[0], self._once[1])
        if self._flash:
            self.web.sessions.flash(response, self._flash)
        response.headers.update(SECURITY_HEADERS)
        return response

    def redirect(self, url: str, flash: str | None = None, *, problem: bool = False) -> Response:
        if flash:
            self.flash(flash, problem=problem)
        return self._finish(RedirectResponse(url, status_code=303))

    async def nav(
        self,
        org_id: int | None,
        project_id: int | None,
        section: str,
        conn: AsyncConnection | None = None,
    ) -> Nav:
        """The menu; on ``conn`` when the page has a connection open already (on
        PostgreSQL each connection checked out costs a round trip)."""
        if conn is None:
            async with self.state.reader.connect() as own:
                return await self.nav(org_id, project_id, section, own)
        p = self.who
        orgs = [
            (r.id, r.name)
            for r in await conn.execute(
                sa.select(organizations.c.id, organizations.c.name)
                .where(organizations.c.id.in_(list(p.roles)))
                .order_by(organizations.c.id)
            )
        ]
        prjs = (
            [
                (r.id, r.name)
                for r in await conn.execute(
                    sa.select(projects.c.id, projects.c.name)
                    .where(projects.c.organization_id == org_id)
                    .where(projects.c.deleted_at.is_(None))
                    .order_by(projects.c.id)
                )
            ]
            if org_id is not None
            else []
        )
        return Nav(orgs, prjs, org_id, project_id, section, p.roles.get(org_id or -1))

    async def render(
        self,
        template: str,
        *,
        status: int = 200,
        org_id: int | None = None,
        project_id: int | None = None,
        section: str = "",
        menu: Nav | None = None,
        off_loop: bool = False,
        **values: Any,
    ) -> Response:
        """The page. ``menu``: the page read its menu already (``nav`` on its connection).
        ``off_loop``: a page of long lists (50 deliveries with their attempts take 5-20 ms
        of Jinja) renders in a worker thread, so the loop keeps answering meanwhile (the
        GIL passes between them every few milliseconds)."""
        nav = menu
        if nav is None and self.principal:
            nav = await self.nav(org_id, project_id, section)
        raw_flash = self.request.cookies.get(FLASH_COOKIE)
        # The message a redirect left for this page, then this request's own: shown now,
        # not left in a cookie for the page after.
        shown = [*self.web.sessions.read_flash(raw_flash), *self._flash]
        self._flash = []
        problems = [m for kind, m in shown if kind == PROBLEM]
        if values.get("problem"):
            problems.append(values["problem"])
        page = self.web.env.get_template(template)
        render = functools.partial(
            page.render,
            ctx=self,
            me=self.principal,
            nav=nav,
            csrf=self.session.csrf,
            flash=" ".join(m for kind, m in shown if m and kind == INFO) or None,
            path=self.request.url.path,
            org_id=org_id,
            project_id=project_id,
            **{"notice": None, **values, "problem": " ".join(problems) or None},
        )
        html = await asyncio.to_thread(render) if off_loop else render()
        response = HTMLResponse(html, status_code=status)
        if raw_flash:
            self.web.sessions.clear_flash(response)
        if ONCE_COOKIE in self.request.cookies:
            self.web.sessions.clear_once(response)
        return self._finish(response)


_ORG_IN_PATH = re.compile(r"^/orgs/(\d+)(?:/|$)")


async def error_page(request: Request, status: int, message: str) -> Response:
    """The error page. A signed-in person keeps the menu and the switcher, so a stale link
    or a refusal is not a dead end; the organization is the one in the address when they
    belong to it, else their first. Without a usable database (503) or a session, or when
    reading either fails, the page is the bare one: an error page must not fail itself."""
    if status != 503:
        try:
            ctx = await Ctx.of(request, signed_in=False)
            if ctx.principal is not None and ctx.principal.roles:
                found = _ORG_IN_PATH.match(request.url.path)
                org_id = int(found.group(1)) if found else None
                if org_id not in ctx.principal.roles:
                    org_id = min(ctx.principal.roles)
                return await ctx.render(
                    "error.html", status=status, org_id=org_id, code=status, message=message
                )
        except Exception:  # the plain page below still says what went wrong
            log.warning("error page %s without the menu", status, exc_info=True)
    web = Web.of(request)
    html = web.env.get_template("error.html").render(
        code=status,
        message=message,
        me=None,
        nav=None,
        flash=None,
        notice=None,
        problem=None,
        path=request.url.path,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


class PageRoute(APIRoute):
    """Routes of the web pages: sign-in redirects and HTML error pages instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                if request.method != "GET":
                    target = "/"
                response = RedirectResponse(f"/login?next={quote(target)}", status_code=303)
                response.headers.update(SECURITY_HEADERS)
                return response
            except ServiceError as exc:
                return await error_page(request, http_status(exc), exc.message)
            except PageError as exc:
                return await error_page(request, exc.status, exc.message)

        return run


def field_errors(exc: ServiceError) -> dict[str, str]:
    """An API error as the message to show next to its form field ('' for the form)."""
    field = exc.field or ""
    message = exc.message
    if field and message.startswith(f"{field}: "):
        message = message.removeprefix(f"{field}: ")
    return {field: message}


def int_or_none(value: object) -> int | None:
    """A form's id field as a number, or None when it is blank or not one."""
    return int(value) if isinstance(value, str) and value.isdigit() else None


def checked(values: Mapping[str, Any], key: str) -> Markup:
    return Markup(" checked") if values.get(key) else Markup("")
