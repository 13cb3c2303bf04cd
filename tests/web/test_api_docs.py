"""The API docs page (/docs) renders Swagger UI from loadbell's own files: in Chromium, with
every request to a host other than loopback refused, the operations show and no request was
even tried elsewhere (no CDN, no web font, no validator badge, no remote favicon)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Route, expect

from conftest import Server
from web.conftest import TIMEOUT_MS

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# A name under .test never resolves (RFC 6761); the page is served under it through the
# route below, so Swagger UI sees a document that is not on localhost (it treats the two
# differently, e.g. for its online validator) as an operator's browser would.
NAMED_HOST = "loadbell.test"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # as `loadbell serve` prints it
        NAMED_HOST,  # as an operator reaches it by name: Swagger UI acts differently then
    ],
)
async def test_docs_render_with_no_request_off_the_machine(
    browser: Browser, app_server: Server, host: str
) -> None:
    """/docs shows the "POST /api/v1/runs" operation while every non-loopback request is
    aborted, and none was attempted; its assets load from /static/swagger-ui/."""
    server = urlsplit(app_server.url)
    origin = f"http://{host}:{server.port}" if host != NAMED_HOST else f"http://{NAMED_HOST}"
    context = await browser.new_context()
    outside: list[str] = []
    served: dict[str, int] = {}

    async def only_loopback(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.hostname == NAMED_HOST:
            # Played by the real server: the request goes to loopback, never to a resolver.
            real = url._replace(netloc=server.netloc).geturl()
            response = await route.fetch(url=real)
            served[url.path] = response.status
            await route.fulfill(response=response)
        elif url.hostname in LOOPBACK:
            served[url.path] = -1  # filled in by the response listener below
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort("blockedbyclient")

    await context.route("**/*", only_loopback)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    refused: list[str] = []  # Content-Security-Policy violations reported on the console
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.on(
        "response",
        lambda response: served.__setitem__(urlsplit(response.url).path, response.status),
    )
    try:
        await page.goto(f"{origin}/docs")
        # The operation's summary line: its method and its path, as a reader sees them.
        runs_post = page.locator(".opblock-post .opblock-summary").filter(
            has=page.get_by_text("/api/v1/runs", exact=True)
        )
        await expect(runs_post).to_be_visible()
        await expect(runs_post.locator(".opblock-summary-method")).to_have_text("POST")
        await expect(page.locator(".opblock").first).to_be_visible()
        assert await page.locator(".opblock").count() > 20  # the whole API, not one tag
        await page.wait_for_load_state("networkidle")
    finally:
        await context.close()

    assert outside == [], f"requests that would have left the machine: {outside}"
    assert refused == [], refused
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert served.get(f"/static/swagger-ui/{asset}") == 200, (asset, served)
    assert served.get("/api/v1/openapi.json") == 200, served


async def test_docs_page_names_only_local_assets(app_server: Server) -> None:
    """The /docs HTML refers to no other origin, turns the validator badge off, and carries a
    Content-Security-Policy that keeps scripts, styles and fetches on this origin."""
    async with httpx.AsyncClient(base_url=app_server.url, timeout=30) as client:
        r = await client.get("/docs")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "http://" not in r.text and "https://" not in r.text, r.text
        assert '"validatorUrl": null' in r.text
        policy = r.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
        # FastAPI's own pages, which load from a CDN, are gone.
        assert (await client.get("/redoc")).status_code == 404
        asset = await client.get("/static/swagger-ui/swagger-ui-bundle.js")
        assert asset.status_code == 200
        assert "SwaggerUIBundle" in asset.text
