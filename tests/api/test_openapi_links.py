"""Each create in the OpenAPI document links to the operations on what it created."""

from __future__ import annotations

from pathlib import Path

from loadbell.api.openapi import links_from_creates
from loadbell.app import create_app
from loadbell.settings import Settings


def test_creates_link_to_every_operation_below_the_new_id(tmp_path: Path) -> None:
    """POST /channels links its 201 to each operation under /channels/{channel_id}, passing
    the body's id; a create with nothing below it gets no links."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db", secret_key="k"))
    paths = app.openapi()["paths"]
    links = paths["/api/v1/channels"]["post"]["responses"]["201"]["links"]
    below = {
        f"{method.upper()} {path.removeprefix('/api/v1/channels')}"
        for path, ops in paths.items()
        if path.startswith("/api/v1/channels/{channel_id}")
        for method in ops
    }
    assert set(links) == below and len(below) >= 9
    patch = links["PATCH /{channel_id}"]
    assert patch["parameters"] == {"channel_id": "$response.body#/id"}
    assert patch["operationId"] == paths["/api/v1/channels/{channel_id}"]["patch"]["operationId"]
    assert "links" not in paths["/api/v1/organizations"]["post"]["responses"]["201"]


def test_a_path_that_only_shares_a_prefix_is_not_linked() -> None:
    """/channels/preview is not under /channels/{id}, and /runs2/{x_id} not under /runs."""
    paths = {
        "/runs": {"post": {"responses": {"201": {}}}},
        "/runs/{run_id}": {"get": {"operationId": "get_run"}},
        "/runs/preview": {"post": {"operationId": "preview"}},
        "/runs2/{run_id}": {"get": {"operationId": "other"}},
    }
    links_from_creates(paths)
    assert list(paths["/runs"]["post"]["responses"]["201"]["links"]) == ["GET /{run_id}"]
